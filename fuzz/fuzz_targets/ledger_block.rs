//! Fuzz the format-3 block codec (crates/ledger/src/columns.rs, docs/FORMAT.md "Version 3").
//! First byte even: the rest is a block's compressed bytes (after a u32 record count and a
//! u32 uncompressed length) and decoding must give an error or an area, never panic or
//! allocate without bound. Odd: the rest is cut at newlines into records — envelopes of every
//! origin built from the bytes, or the bytes as they are — that must round-trip exactly
//! through the codec.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s);
}

fn u64_of(c: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = c.len().min(8);
    a[..n].copy_from_slice(&c[..n]);
    u64::from_le_bytes(a)
}

/// A record payload from one chunk: a kind-1 envelope when its first byte is odd.
fn payload(chunk: &[u8]) -> Vec<u8> {
    let Some((&sel, rest)) = chunk.split_first() else {
        return Vec::new();
    };
    if sel & 1 == 0 {
        return chunk.to_vec();
    }
    let cut = rest.len() / 3;
    let (field, raw) = rest.split_at(cut);
    let mut b = vec![if sel & 2 == 0 { 1 } else { 2 }, 1];
    b.extend_from_slice(&u64_of(rest).to_le_bytes());
    b.extend_from_slice(&[sel >> 4, sel >> 2, (sel >> 3) % 3]);
    match (sel >> 3) % 3 {
        1 => b.extend_from_slice(&[0x07, 0xe9]),
        2 => b.extend_from_slice(&u64_of(field).to_le_bytes()),
        _ => {}
    }
    put_str(&mut b, &field[..field.len().min(3)]);
    let origin = (sel >> 5) % 4 + 1;
    b.push(origin);
    put_str(&mut b, field);
    if origin == 1 || origin == 4 {
        b.extend_from_slice(&u64_of(raw).wrapping_mul(sel as u64).to_le_bytes());
    }
    if origin != 1 {
        put_str(&mut b, &field[..field.len() / 2]);
    }
    if origin == 3 {
        put_str(&mut b, b"CN=fuzz");
    }
    put_str(&mut b, raw);
    b
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if rest.len() < 8 {
            return;
        }
        let count = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let u = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) % (1 << 22);
        let _ = ledger::testing::unpack_block(ledger::testing::CODEC_COLUMNS, count, u, &rest[8..]);
        // A reader after a few records reads only those, and the columns before them.
        let (from, want) = ((mode >> 5) as usize, (mode >> 1) as usize + 1);
        let _ = ledger::testing::unpack_block_prefix(
            ledger::testing::CODEC_COLUMNS,
            count,
            u,
            &rest[8..],
            from,
            want,
        );
        return;
    }
    let mut framed = Vec::new();
    let mut count = 0u32;
    for chunk in rest.split(|b| *b == b'\n') {
        ledger::testing::push_framed(&mut framed, count.to_le_bytes(), &payload(chunk));
        count += 1;
    }
    let (u, comp) = ledger::testing::pack_block(ledger::testing::CODEC_COLUMNS, &framed, 1)
        .expect("pack a well-framed area");
    let back = ledger::testing::unpack_block(ledger::testing::CODEC_COLUMNS, count, u, &comp)
        .expect("unpack what pack made");
    assert_eq!(back, framed);
    // A run of records alone is the same bytes as that part of the whole area.
    let (from, want) = ((mode >> 5) as usize, (mode >> 1) as usize + 1);
    let ((first, end), part) = ledger::testing::unpack_block_prefix(
        ledger::testing::CODEC_COLUMNS,
        count,
        u,
        &comp,
        from,
        want,
    )
    .expect("unpack records of what pack made");
    let n = count as usize;
    let (ef, ee) = if from == 0 && want >= n {
        (0, n)
    } else {
        let f = from.min(n - 1);
        (f, want.clamp(f + 1, n))
    };
    assert_eq!((first, end), (ef, ee));
    let offsets = ledger::testing::framed_offsets(&framed).expect("framing");
    assert_eq!(part, framed[offsets[first]..offsets[end]]);
});
