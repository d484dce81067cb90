//! Element formats against golden tables from ml_dtypes (FP8, FP6, FP4,
//! E8M0) and en_dtypes (HiF8), made by `scripts/golden/generate.py`:
//! every code decoded, every bf16 value encoded, and 2^21 random f32 per
//! distribution encoded (compared by sha256 per 65536-value chunk), on the
//! scalar reference and on every SIMD level the CPU has.

mod common;

use common::*;
use exodus_numerics::bulk;
use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::{ElementFormat, EncodeOptions, Overflow, Rounding};
use sha2::{Digest, Sha256};

fn format(name: &str) -> ElementFormat {
    ElementFormat::ALL
        .into_iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("unknown format {name}"))
}

/// The options that reproduce a golden "mode" of a format.
fn options(name: &str, mode: &str) -> EncodeOptions {
    let rounding = if name == "e8m0" || name == "hif8" {
        Rounding::NearestAway // what ml_dtypes (E8M0) and en_dtypes (HiF8) do
    } else {
        Rounding::NearestEven
    };
    let overflow = if mode == "cast" {
        Overflow::NonFinite
    } else {
        Overflow::Saturate
    };
    EncodeOptions { rounding, overflow }
}

#[test]
fn every_code_decodes_like_the_reference() {
    let golden = read_json("elements_decode.json");
    let decode = golden["decode"].as_object().unwrap();
    assert_eq!(decode.len(), 7);
    for (name, table) in decode {
        let f = format(name);
        let expected: Vec<f32> = table
            .as_array()
            .unwrap()
            .iter()
            .map(|b| f32::from_bits(b.as_u64().unwrap() as u32))
            .collect();
        assert_eq!(expected.len(), 1 << f.bits());
        for (code, &want) in expected.iter().enumerate() {
            let got = f.decode(code as u32);
            assert!(
                same_f32(got, want),
                "{name} code {code:#04x}: got {got}, want {want}"
            );
        }
        let codes: Vec<u8> = (0..expected.len()).map(|c| c as u8).collect();
        for level in SimdLevel::supported() {
            let mut out = vec![0f32; codes.len()];
            bulk::decode_with(level, f, &codes, &mut out).unwrap();
            for (code, (&got, &want)) in out.iter().zip(&expected).enumerate() {
                assert!(same_f32(got, want), "{name} {level:?} code {code:#04x}");
            }
        }
    }
}

fn check_codes(name: &str, what: &str, x: &[f32], want: &[u8], opts: EncodeOptions) {
    let f = format(name);
    for (i, (&v, &w)) in x.iter().zip(want).enumerate() {
        let got = f.encode(v, opts) as u8;
        assert_eq!(
            got,
            w,
            "{name} {what}: input {v:e} (bits {:#010x}, index {i}) gave {got:#04x}, want {w:#04x}",
            v.to_bits()
        );
    }
    for level in SimdLevel::supported() {
        let mut out = vec![0u8; x.len()];
        bulk::encode_with(level, f, x, &mut out, opts).unwrap();
        if let Some(i) = (0..x.len()).find(|&i| out[i] != want[i]) {
            panic!(
                "{name} {what} on {level:?}: input {:e} gave {:#04x}, want {:#04x}",
                x[i], out[i], want[i]
            );
        }
    }
}

#[test]
fn every_bf16_value_encodes_like_the_reference() {
    let x: Vec<f32> = (0..=u16::MAX)
        .map(|b| f32::from_bits((b as u32) << 16))
        .collect();
    let mut checked = 0;
    for name in [
        "fp8-e4m3", "fp8-e5m2", "fp6-e2m3", "fp6-e3m2", "fp4-e2m1", "e8m0", "hif8",
    ] {
        for mode in ["cast", "saturate"] {
            let want = read_data(&format!("bf16_encode/{name}-{mode}.bin"));
            assert_eq!(want.len(), x.len());
            check_codes(name, mode, &x, &want, options(name, mode));
            checked += 1;
        }
    }
    assert_eq!(checked, 14);
}

#[test]
fn random_f32_encode_like_the_reference() {
    let golden = read_json("random_encode.json");
    let count = golden["count"].as_u64().unwrap() as usize;
    let chunk = golden["chunk"].as_u64().unwrap() as usize;
    let cases = golden["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 7 * 2 * 2);
    for (case, spec) in cases {
        let (name, rest) = case.split_at(case.find("-cast").or(case.find("-saturate")).unwrap());
        let mode = if rest.starts_with("-cast") {
            "cast"
        } else {
            "saturate"
        };
        let x = random_f32(
            spec["dist"].as_str().unwrap(),
            spec["seed"].as_u64().unwrap(),
            count,
            spec["lo"].as_i64().unwrap(),
            spec["hi"].as_i64().unwrap(),
        );
        let digests: Vec<&str> = spec["sha256"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        let f = format(name);
        let opts = options(name, mode);
        let scalar: Vec<u8> = x.iter().map(|&v| f.encode(v, opts) as u8).collect();
        let mut outputs = vec![("scalar reference".to_string(), scalar)];
        for level in SimdLevel::supported() {
            let mut out = vec![0u8; count];
            bulk::encode_with(level, f, &x, &mut out, opts).unwrap();
            outputs.push((format!("{level:?}"), out));
        }
        for (who, codes) in outputs {
            for (c, digest) in codes.chunks(chunk).zip(&digests) {
                let got = format!("{:x}", Sha256::digest(c));
                assert_eq!(
                    &got, digest,
                    "{case} ({who}): chunk differs from the reference"
                );
            }
        }
    }
}

#[test]
fn hif8_ties_to_even_differs_from_ties_away_only_at_ties() {
    let f = ElementFormat::HiF8;
    let even = EncodeOptions::SATURATE;
    let away = EncodeOptions {
        rounding: Rounding::NearestAway,
        ..even
    };
    let mut ties = 0;
    for b in 0..=u16::MAX {
        let x = f32::from_bits((b as u32) << 16);
        let (e, a) = (f.encode(x, even), f.encode(x, away));
        if e != a {
            let (ve, va) = (f.decode(e) as f64, f.decode(a) as f64);
            assert_eq!(
                (x as f64 - ve).abs(),
                (va - x as f64).abs(),
                "{x}: not a tie"
            );
            assert!(
                va.abs() > ve.abs(),
                "{x}: ties-away must pick the larger magnitude"
            );
            assert_eq!(e & 1, 0, "{x}: ties-to-even must pick the even code");
            ties += 1;
        }
    }
    assert!(
        ties > 100,
        "the bf16 grid holds many HiF8 ties, found {ties}"
    );
}

#[test]
fn hif8_round_trip_and_monotonic() {
    let f = ElementFormat::HiF8;
    let mut finite: Vec<(f32, u8)> = (0..=255u8)
        .filter(|&c| f.decode(c as u32).is_finite())
        .map(|c| (f.decode(c as u32), c))
        .collect();
    assert_eq!(finite.len(), 256 - 3); // NaN, +Inf, -Inf
    for &(v, c) in &finite {
        for opts in [EncodeOptions::SATURATE, EncodeOptions::NONFINITE] {
            assert_eq!(
                f.encode(v, opts) as u8,
                c,
                "code {c:#04x} = {v} does not round-trip"
            );
        }
    }
    finite.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in finite.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "codes {:#04x} and {:#04x} decode to the same value",
            w[0].1,
            w[1].1
        );
    }
    // Encoding is monotonic over a dense sweep.
    let mut last = f32::NEG_INFINITY;
    let mut x = -40000.0f32;
    while x < 40000.0 {
        let v = f.decode(f.encode(x, EncodeOptions::SATURATE));
        assert!(v >= last, "not monotonic at {x}");
        last = v;
        x = if x.abs() < 1e-6 {
            x + 1e-8
        } else {
            x + x.abs() * 1e-3
        };
    }
}
