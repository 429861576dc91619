//! Writes the real-guest PIO benchmark's firmware image (what `acrn-hsm bench --guest` gives
//! QEMU and benches/c/kvm_floor.c), for runs by hand:
//!
//! ```text
//! cargo run -p acrn-hsm-tools --example guest_pio_image -- OUT [ITERATIONS [WARMUP]]
//! qemu-system-x86_64 <the arguments of guest_pio::qemu_args(OUT, DUMP)>
//! target/bench-c/kvm_floor OUT DUMP
//! ```

use acrn_hsm_tools::guest_pio::{bios_image, guest_code};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: guest_pio_image OUT [ITERATIONS [WARMUP]]");
        std::process::exit(2);
    };
    let num = |i: usize, d: u16| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let image = bios_image(&guest_code(num(1, 1000), num(2, 50)));
    if let Err(e) = std::fs::write(out, image) {
        eprintln!("{out}: {e}");
        std::process::exit(1);
    }
}
