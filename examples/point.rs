//! Click on an image and get the object's mask: Segment Anything (or Open-Vocabulary SAM,
//! which also names it).
//!
//! ```text
//! cargo run --release --example point -- MODEL IMAGE X Y
//! ```
//!
//! `MODEL` is a Segment Anything checkpoint folder (e.g. a download of
//! `facebook/sam-vit-base`) or an Open-Vocabulary SAM folder made by `wordmask convert`. The
//! image is encoded once; every further click on it is quick.

use wordmask::preprocess::RgbImage;
use wordmask::segment::point::{Click, NameRequest, PromptModel, PromptSession};
use wordmask::{Backend, block_on, device};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, image, x, y] = args.as_slice() else {
        eprintln!("usage: point MODEL IMAGE X Y   (X, Y: the click, in the image's pixels)");
        std::process::exit(2);
    };
    let pixels = image::open(image)?.to_rgb8();
    let (width, height) = pixels.dimensions();
    let image = RgbImage::new(width as usize, height as usize, pixels.into_raw())?;
    let object = click(model, image, x.parse()?, y.parse()?)?;
    println!("{} of {} pixels", object.area, width * height);
    if let Some(name) = object.name {
        println!("named {name}");
    }
    Ok(())
}

/// The object a click at `(x, y)` points at.
pub struct Object {
    /// `height * width` values, 1 inside the object.
    pub mask: Vec<u8>,
    /// Pixels inside.
    pub area: usize,
    /// Its name, from a model that names its masks (Open-Vocabulary SAM's own classes).
    pub name: Option<String>,
}

/// Encode `image` with the prompt model at `model` and decode one click at `(x, y)`.
pub fn click(model: &str, image: RgbImage, x: f64, y: f64) -> wordmask::Result<Object> {
    let device = device::open(Backend::Auto)?;
    let mut session = PromptSession::new(PromptModel::open(model, &device)?);
    // The heavy pass, once per image.
    block_on(session.encode(image))?;
    let prompt = wordmask::segment::point::Prompt { points: vec![Click { x, y, positive: true }], bbox: None };
    let answer = block_on(session.prompt(&prompt, NameRequest::default()))?;
    let name = answer.naming.map(|n| n.best.label);
    Ok(Object { mask: answer.mask.mask, area: answer.mask.area, name })
}
