fn main() {
    let a: Vec<String> = std::env::args().collect();
    let n: u16 = a[2].parse().unwrap();
    std::fs::write(
        &a[1],
        acrn_hsm_tools::guest_pio::bios_image(&acrn_hsm_tools::guest_pio::guest_code(n, 50)),
    )
    .unwrap();
}
