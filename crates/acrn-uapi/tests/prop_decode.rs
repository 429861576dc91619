//! Property tests of the slot and page decoders against an independent oracle, on random and
//! structure-aware inputs from a seeded PRNG (no dependency; reproducible: the failing seed and
//! case number are printed).
//!
//! Properties, for every input:
//! * no panic, whatever the bytes and the length;
//! * shorter than a slot / a page: exactly `ShortBuffer { expected, actual }`;
//! * the result equals the oracle's (state, then type, then size and address overflow for slots
//!   that are not FREE), and a decoded request carries the fields found at their offsets;
//! * decode → encode → decode is the identity, and encoding is idempotent on its own output;
//! * a page decodes slot by slot exactly as each 256-byte slice does;
//! * every error has a stable code and a non-empty message.
//!
//! `cargo test -p acrn-uapi --test prop_decode` runs a fixed budget (a few hundred thousand
//! slots, well under a second in release, a few seconds in debug). A longer run:
//! `ACRN_FUZZ_SECS=300 cargo test --release -p acrn-uapi --test prop_decode -- --nocapture`
//! (optional `ACRN_FUZZ_SEED=<n>` to pick the seed; the case count is printed).

use prop_harness::{Budget, Rng};

use acrn_uapi::ioreq::{
    DecodeError, IoPayload, IoreqState, PAGE_SIZE, SLOT_COUNT, SLOT_OFFSET_ADDRESS,
    SLOT_OFFSET_COMPLETION_POLLING, SLOT_OFFSET_DIRECTION, SLOT_OFFSET_KERNEL_HANDLED,
    SLOT_OFFSET_PCI_BUS, SLOT_OFFSET_PCI_DEV, SLOT_OFFSET_PCI_FUNC, SLOT_OFFSET_PCI_REG,
    SLOT_OFFSET_PROCESSED, SLOT_OFFSET_SIZE, SLOT_OFFSET_TYPE, SLOT_OFFSET_VALUE, SLOT_SIZE,
    decode_io_request, decode_ioreq_page, encode_io_request,
};

fn seed() -> u64 {
    prop_harness::seed(0x00ac_4e00_5eed)
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn put_u32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// A slot that is mostly plausible: states, types and sizes from the interesting values, and
/// addresses at the top of the address space, over random bytes.
fn structured_slot(rng: &mut Rng, b: &mut [u8]) {
    rng.fill(b);
    put_u32(
        b,
        SLOT_OFFSET_PROCESSED,
        rng.pick(&[0, 1, 2, 3, 3, 4, u32::MAX]),
    );
    put_u32(
        b,
        SLOT_OFFSET_TYPE,
        rng.pick(&[0, 1, 2, 0, 1, 2, 3, 0x8000_0000]),
    );
    put_u32(b, SLOT_OFFSET_DIRECTION, rng.pick(&[0, 1, 2, u32::MAX]));
    put_u64(
        b,
        SLOT_OFFSET_SIZE,
        rng.pick(&[1, 2, 4, 8, 0, 3, 16, u64::MAX]),
    );
    let address = match rng.below(4) {
        0 => u64::MAX - rng.below(16),
        1 => rng.below(0x10000),
        _ => rng.next(),
    };
    put_u64(b, SLOT_OFFSET_ADDRESS, address);
}

/// What the decoder must answer for a 256-byte slot, computed from the C layout directly.
fn oracle(b: &[u8]) -> Result<(), DecodeError> {
    let state = u32_at(b, SLOT_OFFSET_PROCESSED);
    if state > 3 {
        return Err(DecodeError::UnknownState(state));
    }
    let ty = u32_at(b, SLOT_OFFSET_TYPE);
    if ty > 2 {
        return Err(DecodeError::UnknownType(ty));
    }
    if state == 3 {
        return Ok(()); // FREE: the payload is stale and taken as found.
    }
    let size = u64_at(b, SLOT_OFFSET_SIZE);
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(DecodeError::InvalidSize(size));
    }
    if ty != 2 {
        let address = u64_at(b, SLOT_OFFSET_ADDRESS);
        if address.checked_add(size - 1).is_none() {
            return Err(DecodeError::AddressOverflow { address, size });
        }
    }
    Ok(())
}

fn check_slot(b: &[u8], case: u64, seed: u64) {
    let ctx = || format!("seed {seed} case {case}: {:02x?}", &b[..b.len().min(256)]);
    let got = decode_io_request(b);
    if b.len() < SLOT_SIZE {
        assert_eq!(
            got,
            Err(DecodeError::ShortBuffer {
                expected: SLOT_SIZE,
                actual: b.len()
            }),
            "{}",
            ctx()
        );
        return;
    }
    let want = oracle(b);
    match (&got, want) {
        (Err(e), Err(w)) => assert_eq!(*e, w, "{}", ctx()),
        (Ok(req), Ok(())) => {
            // The fields found at their offsets.
            assert_eq!(
                req.state.raw(),
                u32_at(b, SLOT_OFFSET_PROCESSED),
                "{}",
                ctx()
            );
            assert_eq!(
                req.request_type().raw(),
                u32_at(b, SLOT_OFFSET_TYPE),
                "{}",
                ctx()
            );
            assert_eq!(
                req.completion_polling,
                u32_at(b, SLOT_OFFSET_COMPLETION_POLLING) != 0
            );
            assert_eq!(
                req.kernel_handled,
                u32_at(b, SLOT_OFFSET_KERNEL_HANDLED) != 0
            );
            assert_eq!(req.payload.size(), u64_at(b, SLOT_OFFSET_SIZE), "{}", ctx());
            match req.payload {
                IoPayload::Pio { address, value, .. } => {
                    assert_eq!(address, u64_at(b, SLOT_OFFSET_ADDRESS));
                    assert_eq!(value, u32_at(b, SLOT_OFFSET_VALUE));
                }
                IoPayload::Mmio { address, value, .. } => {
                    assert_eq!(address, u64_at(b, SLOT_OFFSET_ADDRESS));
                    assert_eq!(value, u64_at(b, SLOT_OFFSET_VALUE));
                }
                IoPayload::PciCfg {
                    value,
                    bus,
                    dev,
                    func,
                    reg,
                    ..
                } => {
                    assert_eq!(value, u32_at(b, SLOT_OFFSET_VALUE));
                    assert_eq!(
                        (bus, dev, func, reg),
                        (
                            u32_at(b, SLOT_OFFSET_PCI_BUS),
                            u32_at(b, SLOT_OFFSET_PCI_DEV),
                            u32_at(b, SLOT_OFFSET_PCI_FUNC),
                            u32_at(b, SLOT_OFFSET_PCI_REG)
                        )
                    );
                }
            }
            // Round trip: encode, decode again, same request; encoding is idempotent.
            let mut enc = [0u8; SLOT_SIZE];
            encode_io_request(req, &mut enc).expect("a slot-sized buffer");
            let again = decode_io_request(&enc).expect("an encoded request decodes");
            assert_eq!(&again, req, "{}", ctx());
            let mut enc2 = [0xa5u8; SLOT_SIZE + 7];
            encode_io_request(&again, &mut enc2).expect("a longer buffer");
            assert_eq!(&enc2[..SLOT_SIZE], &enc[..], "{}", ctx());
            assert_eq!(
                &enc2[SLOT_SIZE..],
                &[0xa5; 7],
                "bytes after the slot untouched"
            );
            if req.state == IoreqState::Free {
                return;
            }
            assert!(req.payload.validate().is_ok());
        }
        (got, want) => panic!("decoder {got:?}, oracle {want:?}: {}", ctx()),
    }
    if let Err(e) = got {
        assert!(e.code().starts_with("ERR_"));
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn slots_random_and_structured() {
    let seed = seed();
    let mut rng = Rng(seed);
    let mut budget = Budget::new(200_000, 1024);
    let mut buf = vec![0u8; 600];
    let mut decoded_ok = 0u64;
    while budget.more() {
        let case = budget.done();
        let len = match rng.below(8) {
            0 => rng.below(SLOT_SIZE as u64) as usize,
            1 => SLOT_SIZE + rng.below(344) as usize,
            _ => SLOT_SIZE,
        };
        let b = &mut buf[..len];
        if len >= SLOT_SIZE && rng.below(4) != 0 {
            structured_slot(&mut rng, b);
        } else {
            rng.fill(b);
        }
        check_slot(b, case, seed);
        decoded_ok += u64::from(decode_io_request(b).is_ok());
    }
    println!(
        "prop_decode slots: {} cases ({} decoded), seed {seed}",
        budget.done(),
        decoded_ok
    );
    // The generator must reach the success path often, not only the error paths.
    assert!(
        decoded_ok * 10 > budget.done(),
        "{decoded_ok} of {}",
        budget.done()
    );
}

#[test]
fn pages_decode_slot_by_slot() {
    let seed = seed() ^ 0x9a6e;
    let mut rng = Rng(seed);
    let mut budget = Budget::new(3_000, 1024);
    let mut buf = vec![0u8; PAGE_SIZE + 64];
    while budget.more() {
        let len = match rng.below(6) {
            0 => rng.below(PAGE_SIZE as u64) as usize,
            1 => PAGE_SIZE + rng.below(64) as usize,
            _ => PAGE_SIZE,
        };
        let b = &mut buf[..len];
        rng.fill(b);
        if len >= PAGE_SIZE {
            for i in 0..SLOT_COUNT {
                if rng.below(2) == 0 {
                    structured_slot(&mut rng, &mut b[i * SLOT_SIZE..(i + 1) * SLOT_SIZE]);
                }
            }
        }
        match decode_ioreq_page(b) {
            Err(e) => {
                assert!(len < PAGE_SIZE, "seed {seed} case {}", budget.done());
                assert_eq!(
                    e,
                    DecodeError::ShortBuffer {
                        expected: PAGE_SIZE,
                        actual: len
                    }
                );
            }
            Ok(slots) => {
                assert!(len >= PAGE_SIZE);
                for (i, s) in slots.iter().enumerate() {
                    let one = decode_io_request(&b[i * SLOT_SIZE..(i + 1) * SLOT_SIZE]);
                    assert_eq!(s, &one, "seed {seed} case {} slot {i}", budget.done());
                    check_slot(&b[i * SLOT_SIZE..(i + 1) * SLOT_SIZE], budget.done(), seed);
                }
            }
        }
    }
    println!("prop_decode pages: {} cases, seed {seed}", budget.done());
}

#[test]
fn encode_refuses_short_buffers() {
    let mut rng = Rng(seed() ^ 0xe4c0);
    let mut slot = [0u8; SLOT_SIZE];
    structured_slot(&mut rng, &mut slot);
    put_u32(&mut slot, SLOT_OFFSET_PROCESSED, 3);
    put_u32(&mut slot, SLOT_OFFSET_TYPE, 1);
    let req = decode_io_request(&slot).expect("a FREE MMIO slot");
    for len in 0..SLOT_SIZE {
        let mut b = vec![0x11u8; len];
        let e = encode_io_request(&req, &mut b).expect_err("short");
        assert_eq!(e.code(), "ERR_SHORT_BUFFER");
        assert!(b.iter().all(|&x| x == 0x11), "nothing written on error");
    }
}
