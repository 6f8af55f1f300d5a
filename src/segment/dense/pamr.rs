//! PAMR, pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020, "Single-Stage Semantic
//! Segmentation from Image Labels", §3.3), as NACLIP applies it (sinahmr/NACLIP @ 0cac3a65,
//! `pamr.py`, `naclip.py`): on the raw cosine scores at the output size, guided by the
//! normalised image. For each dilation d the 8 neighbours at distance d (replicate padding)
//! give affinities `-|I(c) - I(n)| / (1e-8 + 0.1 σ)`, σ the unbiased standard deviation of the
//! 3x3 windows at all dilations; averaged over colour channels and softmaxed over the
//! neighbours, they repeatedly replace each score by its affinity-weighted neighbourhood.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

/// NACLIP's settings: 10 iterations at dilations 8 and 16.
pub const ITERATIONS: usize = 10;
pub const DILATIONS: [usize; 2] = [8, 16];

/// `x` padded by `d` on every side by repeating its edge pixels. `[b, c, h, w] -> [b, c, h+2d, w+2d]`
fn pad_replicate(x: Tensor<4>, d: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let left = x.clone().slice([0..b, 0..c, 0..h, 0..1]).repeat_dim(3, d);
    let right = x.clone().slice([0..b, 0..c, 0..h, w - 1..w]).repeat_dim(3, d);
    let x = Tensor::cat(vec![left, x, right], 3);
    let top = x.clone().slice([0..b, 0..c, 0..1, 0..w + 2 * d]).repeat_dim(2, d);
    let bottom = x.clone().slice([0..b, 0..c, h - 1..h, 0..w + 2 * d]).repeat_dim(2, d);
    Tensor::cat(vec![top, x, bottom], 2)
}

/// The 3x3 window at dilation `d` around every pixel: `(offset, shifted)` pairs, centre included.
fn window(x: &Tensor<4>, d: usize) -> Vec<((isize, isize), Tensor<4>)> {
    let [b, c, h, w] = x.dims();
    let padded = pad_replicate(x.clone(), d);
    let mut out = Vec::with_capacity(9);
    for dy in -1isize..=1 {
        for dx in -1isize..=1 {
            let y0 = (d as isize + dy * d as isize) as usize;
            let x0 = (d as isize + dx * d as isize) as usize;
            out.push(((dy, dx), padded.clone().slice([0..b, 0..c, y0..y0 + h, x0..x0 + w])));
        }
    }
    out
}

/// Neighbours (centre excluded) at every dilation, in a fixed order.
fn neighbours(x: &Tensor<4>, dilations: &[usize]) -> Vec<Tensor<4>> {
    dilations.iter().flat_map(|&d| window(x, d).into_iter().filter(|(o, _)| *o != (0, 0)).map(|(_, t)| t)).collect()
}

/// Refine `scores` (`[b, k, h, w]`) with the guide images `image` (`[b, 3, h, w]`).
pub fn refine(image: Tensor<4>, scores: Tensor<4>, iterations: usize, dilations: &[usize]) -> Tensor<4> {
    // σ over the 3x3 windows of every dilation (the centre counted once per dilation).
    let samples: Vec<Tensor<4>> =
        dilations.iter().flat_map(|&d| window(&image, d).into_iter().map(|(_, t)| t)).collect();
    let n = samples.len() as f64;
    let mean = Tensor::cat(samples.clone(), 0).sum_dim(0).div_scalar(n);
    let var = samples
        .iter()
        .fold(mean.zeros_like(), |acc, s| acc.add(s.clone().sub(mean.clone()).powf_scalar(2.0)))
        .div_scalar(n - 1.0);
    let eps = crate::nn::tiny(&var, 1e-8);
    let denom = var.sqrt().mul_scalar(0.1).add_scalar(eps);
    let affinities: Vec<Tensor<4>> = neighbours(&image, dilations)
        .into_iter()
        .map(|nb| image.clone().sub(nb).abs().neg().div(denom.clone()).mean_dim(1))
        .collect();
    let weights = softmax(Tensor::cat(affinities, 1), 1); // [b, neighbours, h, w]
    let count = weights.dims()[1];
    let [b, _, h, w] = weights.dims();
    let mut mask = scores;
    for _ in 0..iterations {
        mask = neighbours(&mask, dilations)
            .into_iter()
            .enumerate()
            .map(|(i, nb)| nb.mul(weights.clone().slice([0..b, i..i + 1, 0..h, 0..w])))
            .reduce(|a, b| a.add(b))
            .expect("at least one neighbour");
        debug_assert_eq!(count, 8 * dilations.len());
    }
    mask
}
