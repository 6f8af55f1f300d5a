//! Image preprocessing against transformers `CLIPImageProcessor` (PIL backend) on the fixture
//! images, with and without the centre crop.

use crate::common;

use common::{IMAGES, MODELS, Reference, all_close, image};
use wordmask::preprocess::Preprocessor;

/// The resize is bit-exact to Pillow; what remains is float rounding of rescale/normalise.
const PIXEL_TOL: f32 = 1e-5;

#[test]
fn pixels_match_clip_image_processor() {
    let mut failures = Vec::new();
    for model in MODELS {
        let reference = Reference::load(model);
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(common::fixtures().join(model).join("config.json")).unwrap())
                .unwrap();
        let size = config["vision_config"]["image_size"].as_u64().unwrap() as usize;
        for name in IMAGES {
            for crop in [true, false] {
                let mut p = Preprocessor::clip(size);
                if !crop {
                    p.crop = None;
                }
                let (ours, (w, h)) = p.apply(&image(name)).unwrap();
                let tag = format!("{}.{name}.pixel_values", if crop { "crop" } else { "nocrop" });
                let (want, shape) = reference.get(&tag);
                if [1, 3, h, w] != shape[..] {
                    failures.push(format!("{model} {tag}: size {w}x{h}, reference {shape:?}"));
                    continue;
                }
                if let Err(e) = all_close(&format!("{model} {tag}"), &ours, &want, PIXEL_TOL, false) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
