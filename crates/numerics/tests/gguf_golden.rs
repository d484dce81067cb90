//! Bit-exact checks against fixtures made by `scripts/golden/gguf_golden.py` from
//! the PyPI `gguf` package: dequantization of random blocks (all 11 types),
//! quantization of the legacy types, exodus's K quantizer as decoded by
//! `gguf`, and slices of the real SmolLM2-135M Q4_1 model. Every check runs
//! on the scalar path and on each SIMD level the CPU supports.

mod gguf_common;

use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::gguf::{dequantize_with, quantize, GgufBlockType};
use gguf_common::{assert_same_f32, f32s, fixture, hex, read, sha256};

fn by_name(name: &str) -> GgufBlockType {
    GgufBlockType::ALL
        .into_iter()
        .find(|t| t.name() == name)
        .unwrap_or_else(|| panic!("unknown type {name}"))
}

fn check_dequant(t: GgufBlockType, raw: &[u8], want: &[f32], what: &str) {
    for level in SimdLevel::supported() {
        let mut got = vec![f32::from_bits(0x7fc0_1234); want.len()];
        dequantize_with(level, t, raw, &mut got).expect("dequantize");
        assert_same_f32(&got, want, &format!("{what} [{}]", level.name()));
    }
}

#[test]
fn dequantize_matches_gguf_package() {
    for t in GgufBlockType::ALL {
        let f = fixture(&format!("deq_{}.bin", t.name()), b"GGDQ");
        assert_eq!(
            (f.block_bytes, f.block_elems),
            (t.block_bytes(), t.block_elems())
        );
        assert!(f.n_blocks >= 32);
        let (raw, rest) = f.body.split_at(f.n_blocks * f.block_bytes);
        let want = f32s(rest);
        assert_eq!(want.len(), f.n_blocks * f.block_elems);
        check_dequant(t, raw, &want, &format!("deq_{}", t.name()));
    }
}

#[test]
fn quantize_matches_gguf_package() {
    for name in ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"] {
        let t = by_name(name);
        let f = fixture(&format!("q_{name}.bin"), b"GGQZ");
        let n_in = f.n_blocks * f.block_elems * 4;
        let x = f32s(&f.body[..n_in]);
        let want = &f.body[n_in..];
        assert_eq!(want.len(), f.n_blocks * t.block_bytes());
        let mut got = vec![0xA5u8; want.len()];
        quantize(t, &x, &mut got).expect("quantize");
        for (i, (g, w)) in got
            .chunks(t.block_bytes())
            .zip(want.chunks(t.block_bytes()))
            .enumerate()
        {
            assert_eq!(
                g,
                w,
                "{name}: block {i} differs (input {:?}...)",
                &x[i * 32..i * 32 + 4]
            );
        }
    }
}

/// Our K quantizer's bytes (frozen at fixture time) and how `gguf` decodes them.
#[test]
fn kquant_decoded_by_gguf_package() {
    for name in ["q4_k", "q6_k", "q8_k"] {
        let t = by_name(name);
        let f = fixture(&format!("kq_{name}.bin"), b"GGKQ");
        let ne = f.n_blocks * f.block_elems;
        let nb = f.n_blocks * f.block_bytes;
        let x = f32s(&f.body[..4 * ne]);
        let bytes = &f.body[4 * ne..4 * ne + nb];
        let deq = f32s(&f.body[4 * ne + nb..]);
        let mut got = vec![0u8; nb];
        quantize(t, &x, &mut got).expect("quantize");
        assert!(
            got == bytes,
            "{name}: quantizer output changed since the fixture was made"
        );
        check_dequant(t, bytes, &deq, &format!("kq_{name}"));
    }
}

/// Writes `kq_<type>.ours` for `scripts/golden/gguf_golden.py` (run by it).
#[test]
#[ignore = "fixture generator, run by scripts/golden/gguf_golden.py"]
fn write_kquant_bytes() {
    let dir = std::env::var("EXODUS_GGUF_KQ_DIR").expect("EXODUS_GGUF_KQ_DIR");
    let dir = std::path::Path::new(&dir);
    for name in ["q4_k", "q6_k", "q8_k"] {
        let t = by_name(name);
        let x = f32s(&std::fs::read(dir.join(format!("kq_{name}.in"))).expect("read input"));
        let mut out = vec![0u8; x.len() / t.block_elems() * t.block_bytes()];
        quantize(t, &x, &mut out).expect("quantize");
        std::fs::write(dir.join(format!("kq_{name}.ours")), out).expect("write");
    }
}

/// Slices of the project's default model, SmolLM2-135M-Instruct Q4_1.
#[test]
fn real_model_tensors() {
    let manifest = String::from_utf8(read("model_smollm2.txt")).expect("utf-8");
    let mut lines = manifest.lines();
    let model: Vec<&str> = lines.next().expect("model line").split(' ').collect();
    assert_eq!(model[0], "model");
    assert_eq!(model[2].len(), 64, "model sha256");
    let mut types = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[0], "tensor");
        let t = by_name(f[2]);
        let n_blocks: usize = f[3].parse().expect("n_blocks");
        let raw = read(f[4]);
        assert_eq!(raw.len(), n_blocks * t.block_bytes(), "{}", f[1]);
        for level in SimdLevel::supported() {
            let mut out = vec![0f32; n_blocks * t.block_elems()];
            dequantize_with(level, t, &raw, &mut out).expect("dequantize");
            let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
            assert_eq!(hex(&sha256(&bytes)), f[5], "{} [{}]", f[1], level.name());
        }
        types.push(t);
    }
    assert!(types.contains(&GgufBlockType::Q4_1));
    assert!(types.contains(&GgufBlockType::Q8_0));
}
