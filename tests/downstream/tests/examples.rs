//! wordmask's examples, run from a crate that depends on it with the CPU backend only: the
//! words example on the colour checkpoint whose words light up their colours
//! (tests/fixtures/semantic-colours), the click example on the Segment Anything checkpoint
//! whose masks follow colour regions (tests/fixtures/sam-colours).

use std::path::PathBuf;

use wordmask::preprocess::RgbImage;

#[allow(dead_code)]
#[path = "../../../examples/segment.rs"]
mod segment;

#[allow(dead_code)]
#[path = "../../../examples/point.rs"]
mod point;

fn fixture(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(name);
    dir.to_str().unwrap().to_string()
}

/// `width x height`, red on the left `split` columns, blue on the rest.
fn red_left_blue_right(width: usize, height: usize, split: usize) -> RgbImage {
    let mut rgb = Vec::with_capacity(width * height * 3);
    for _ in 0..height {
        for x in 0..width {
            rgb.extend_from_slice(if x < split { &[230, 20, 20] } else { &[20, 20, 230] });
        }
    }
    RgbImage::new(width, height, rgb).unwrap()
}

#[test]
fn the_words_example_labels_each_colour_with_its_word() {
    // The words typed in an order other than the painting's, so an index mix-up cannot pass.
    let (width, height, split) = (96, 64, 32);
    let image = red_left_blue_right(width, height, split);
    let segmentation = segment::segment_image(&fixture("semantic-colours"), &image, "blue, green, red").unwrap();
    assert_eq!(segmentation.labels, ["blue", "green", "red"]);
    // Well inside each region (the network sees 16-pixel patches).
    for (x, y, word) in [(8, 32, "red"), (80, 32, "blue")] {
        let label = segmentation.label_map.get(y * width + x);
        assert!(label > 0, "({x}, {y}) is unlabelled");
        assert_eq!(segmentation.labels[label - 1], word, "at ({x}, {y})");
    }
    let (shares, _) = segmentation.shares();
    let share = |w: &str| shares.iter().find(|s| s.label == w).unwrap().share;
    assert!(share("blue") > share("red") && share("red") > share("green"), "shares {shares:?}");
}

#[test]
fn the_click_example_masks_the_clicked_region() {
    let (width, height, split) = (80, 48, 24);
    let image = red_left_blue_right(width, height, split);
    for (x, inside) in [(10.0, 0..split), (60.0, split..width)] {
        let object = point::click(&fixture("sam-colours"), image.clone(), x, 20.0).unwrap();
        let expected: Vec<u8> = (0..width * height).map(|i| u8::from(inside.contains(&(i % width)))).collect();
        let wrong = object.mask.iter().zip(&expected).filter(|(a, b)| a != b).count();
        assert!(wrong * 50 < width * height, "click at x = {x}: {wrong} of {} pixels wrong", width * height);
        assert_eq!(object.area, object.mask.iter().map(|&v| v as usize).sum::<usize>());
        assert_eq!(object.name, None, "Segment Anything names nothing itself");
    }
}
