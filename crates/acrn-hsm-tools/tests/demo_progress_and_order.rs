//! The demo's progress ends at its planned total, and a recorded demo trace's requests nest per
//! vCPU (Trace Event slices on one thread must not overlap: each request of a vCPU starts after
//! the previous one ended, and its stages lie inside it, in order).
//!
//! `cargo test -p acrn-hsm --test demo_progress_and_order`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use acrn_hsm_tools::demo::{self, DemoConfig, DemoMode};
use acrn_trace::{Stage, TraceReader};

#[test]
fn progress_ends_at_the_planned_total() {
    for vcpus in [1u16, 2, 3] {
        let mut last = None;
        let s = demo::run(
            DemoConfig {
                vcpus,
                requests_per_vcpu: 700,
                round_requests: 300,
                mode: DemoMode::Notify,
                ..Default::default()
            },
            |p| last = Some((p.handled, p.planned)),
        )
        .unwrap();
        assert!(s.is_clean(), "{s:?}");
        let (handled, planned) = last.expect("a progress report");
        assert_eq!(handled, planned, "{vcpus} vCPUs: the bar must end at 100%");
        assert_eq!(handled, s.client.handled());
    }
}

#[test]
fn recorded_slices_nest_per_vcpu() {
    let dir = std::env::temp_dir().join(format!("acrn-order-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("order.trace");
    for mode in [DemoMode::Notify, DemoMode::Poll] {
        let s = demo::run(
            DemoConfig {
                vcpus: 4,
                requests_per_vcpu: 3000,
                round_requests: 1000,
                mode,
                trace: Some(path.clone()),
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
        assert!(s.is_clean(), "{s:?}");
        let bytes = std::fs::read(&path).unwrap();
        let mut rd = TraceReader::new(&bytes[..]).unwrap();
        let mut end_of: Vec<Option<(u64, u64)>> = vec![None; 4];
        let mut n = 0u64;
        while let Some(r) = rd.next_record().unwrap() {
            n += 1;
            let Some((a, b)) = Stage::Total.span(&r.ts) else {
                panic!("{mode}: request {n} has no total span: {r:?}");
            };
            // Every observed stamp in protocol order (the guest's and the client's, on two
            // threads: a stamp taken after seeing the other thread's store is not before the
            // other's stamp taken before it), so the stages lie in order inside the total.
            let stamps: Vec<u64> = r.ts.to_array().into_iter().filter(|&t| t != 0).collect();
            assert!(
                stamps.windows(2).all(|w| w[0] <= w[1]),
                "{mode}: request {n}: stamps out of order: {r:?}"
            );
            let mut at = a;
            for st in &Stage::ALL[1..] {
                if let Some((x, y)) = st.span(&r.ts) {
                    assert!(
                        x >= at && y <= b,
                        "{mode}: stage {} of {r:?} outside its slice",
                        st.name()
                    );
                    at = y;
                }
            }
            let v = usize::from(r.vcpu);
            if let Some((prev, idx)) = end_of[v] {
                assert!(
                    a >= prev,
                    "{mode}: vCPU {v}: request {n} starts at {a}, {} ns before request {idx} ended ({prev}): {r:?}",
                    prev - a
                );
            }
            end_of[v] = Some((b, n));
        }
        assert_eq!(n, s.issued);
        // Every request the client served was joined with the guest's record of it.
        let t = s.trace.expect("trace summary");
        assert_eq!(t.joined, s.client.handled(), "{mode}: {t:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
