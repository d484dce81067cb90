//! Last-token logits of ids run as one step and one token at a time (a
//! debugging aid: the two must be close; they take different matmul paths).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let file = exodus_gguf::GgufFile::open(&args[1])?;
    let opts = exodus_model::LoadOptions {
        max_tokens: 512,
        ..Default::default()
    };
    let model = exodus_model::Model::load(&file, &opts)?;
    let ids: Vec<u32> = args[2..]
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let batch = model.forward(&ids, 0, false)?;
    let mut step = Vec::new();
    for (p, &t) in ids.iter().enumerate() {
        step = model.forward(&[t], p, false)?;
    }
    let worst = batch
        .iter()
        .zip(&step)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!(
        "batch top {} / step top {}: largest difference {worst}",
        exodus_model::sample::argmax(&batch),
        exodus_model::sample::argmax(&step)
    );
    for id in [7042usize, 260, 4528, 1315, 5145] {
        println!("{id}: batch {} step {}", batch[id], step[id]);
    }
    Ok(())
}
