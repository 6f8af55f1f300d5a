//! Segment an image with typed words and print each word's share of the pixels.
//!
//! ```text
//! cargo run --release --example segment -- MODEL IMAGE "cat, dog, grass"
//! ```
//!
//! `MODEL` is a checkpoint folder as the hub lays it out (`config.json` and
//! `model.safetensors` or `pytorch_model.bin`), e.g. a download of
//! `openai/clip-vit-base-patch16`; the README lists the supported ones. A word may carry
//! synonyms: `"person | man | woman, dog"`.

use wordmask::preprocess::RgbImage;
use wordmask::segment::{EmbeddingCache, Model, Segmentation, Settings, segment};
use wordmask::{Backend, block_on, device, labels};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, image, words] = args.as_slice() else {
        eprintln!("usage: segment MODEL IMAGE WORDS   (e.g. segment clip-vit-base-patch16 cat.jpg \"cat, sofa\")");
        std::process::exit(2);
    };
    let pixels = image::open(image)?.to_rgb8();
    let (width, height) = pixels.dimensions();
    let image = RgbImage::new(width as usize, height as usize, pixels.into_raw())?;
    let segmentation = segment_image(model, &image, words)?;
    let (shares, unlabelled) = segmentation.shares();
    for share in shares {
        println!("{:>20}  {:5.1} %", share.label, 100.0 * share.share);
    }
    println!("{:>20}  {:5.1} %", "(unlabelled)", 100.0 * unlabelled);
    Ok(())
}

/// Segment `image` with the comma-separated `words` using the checkpoint at `model`, with
/// the engine's default settings, on the GPU where there is one (the CPU otherwise).
pub fn segment_image(model: &str, image: &RgbImage, words: &str) -> wordmask::Result<Segmentation> {
    let device = device::open(Backend::Auto)?;
    let model = Model::open(model, &device)?;
    let labels = labels::parse(words)?;
    // Word embeddings are cached here: segmenting more images with the same words reuses them.
    let mut cache = EmbeddingCache::default();
    let segmented = block_on(segment(&model, image, &labels, &Settings::default(), &mut cache))?;
    Ok(segmented.segmentation)
}
