//! The OpenAI CLIP ResNet trunk (open_clip `ModifiedResNet`): a three-convolution stem and an
//! average pool, then four stages of bottleneck blocks whose strided blocks downsample with an
//! average pool ("anti-aliased") instead of a strided convolution. Batch norms run in inference
//! mode, each folded at load time into a per-channel scale and shift. The attention pool is not
//! used: Open-Vocabulary SAM reads the four stages' maps.

use burn::tensor::activation::relu;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Tensor, TensorData};

use crate::loader::Scope;
use crate::nn::Conv2d;

/// `nn.BatchNorm2d` in eval mode: `(x - mean) / sqrt(var + eps) * weight + bias`, as
/// `x * scale + shift` with `scale`, `shift` `[1, c, 1, 1]`.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub scale: Tensor<4>,
    pub shift: Tensor<4>,
}

impl BatchNorm {
    const EPS: f32 = 1e-5;

    /// `weight`, `bias`, `running_mean`, `running_var`, `[c]` each.
    pub fn load(mut p: Scope, c: usize) -> Self {
        let mut get = |name: &str| p.host(name, &[c]).unwrap_or_else(|| vec![0.0; c]);
        let (w, b, mean, var) = (get("weight"), get("bias"), get("running_mean"), get("running_var"));
        let scale: Vec<f32> = w.iter().zip(&var).map(|(w, v)| w / (v + Self::EPS).sqrt()).collect();
        let shift: Vec<f32> = b.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        let device = p.device().clone();
        let column = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, c, 1, 1]), &device);
        BatchNorm { scale: column(scale), shift: column(shift) }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        x.mul(self.scale.clone()).add(self.shift.clone())
    }
}

fn pool(x: Tensor<4>, k: usize) -> Tensor<4> {
    if k == 1 { x } else { avg_pool2d(x, AvgPoolOptions::new([k, k])) }
}

/// A convolution followed by its batch norm.
#[derive(Debug, Clone)]
pub struct ConvNorm {
    pub conv: Conv2d,
    pub norm: BatchNorm,
}

impl ConvNorm {
    /// The convolution and its norm, named `conv` and `norm` in the scope `p`.
    fn load(p: &mut Scope, [conv, norm]: [&str; 2], c_in: usize, c_out: usize, k: usize, stride: usize) -> Self {
        ConvNorm {
            conv: Conv2d::load(p.pp(conv), c_in, c_out, k, stride, k / 2, false),
            norm: BatchNorm::load(p.pp(norm), c_out),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.norm.forward(self.conv.forward(x))
    }
}

/// `Bottleneck`: 1x1, 3x3, (average pool), 1x1 to four times the width, plus the shortcut.
#[derive(Debug, Clone)]
pub struct Bottleneck {
    pub a: ConvNorm,
    pub b: ConvNorm,
    pub c: ConvNorm,
    pub stride: usize,
    pub downsample: Option<ConvNorm>,
}

impl Bottleneck {
    /// `conv{1,2,3}` and `bn{1,2,3}`, and `downsample.{0,1}` where the shortcut is projected.
    fn load(mut p: Scope, inplanes: usize, planes: usize, stride: usize) -> Self {
        let downsample = (stride > 1 || inplanes != planes * 4)
            .then(|| ConvNorm::load(&mut p.pp("downsample"), ["0", "1"], inplanes, planes * 4, 1, 1));
        Bottleneck {
            a: ConvNorm::load(&mut p, ["conv1", "bn1"], inplanes, planes, 1, 1),
            b: ConvNorm::load(&mut p, ["conv2", "bn2"], planes, planes, 3, 1),
            c: ConvNorm::load(&mut p, ["conv3", "bn3"], planes, planes * 4, 1, 1),
            stride,
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.a.forward(x.clone()));
        let out = pool(relu(self.b.forward(out)), self.stride);
        let out = self.c.forward(out);
        let identity = match &self.downsample {
            Some(d) => d.forward(pool(x, self.stride)),
            None => x,
        };
        relu(out.add(identity))
    }
}

/// `ModifiedResNet` up to its fourth stage.
#[derive(Debug, Clone)]
pub struct ModifiedResNet {
    pub stem: [ConvNorm; 3],
    pub stages: Vec<Vec<Bottleneck>>,
}

impl ModifiedResNet {
    /// `width`: the stem's output channels (the first stage is `4 * width` wide); `layers`:
    /// blocks per stage.
    /// The stem (`conv{1,2,3}`, `bn{1,2,3}`) and the stages `layer1` .. `layer4`.
    pub fn load(mut p: Scope, width: usize, layers: [usize; 4]) -> Self {
        let half = width / 2;
        let stem = [
            ConvNorm::load(&mut p, ["conv1", "bn1"], 3, half, 3, 2),
            ConvNorm::load(&mut p, ["conv2", "bn2"], half, half, 3, 1),
            ConvNorm::load(&mut p, ["conv3", "bn3"], half, width, 3, 1),
        ];
        let mut inplanes = width;
        let stages = (0..4)
            .map(|s| {
                let planes = width << s;
                let mut stage = p.pp(format!("layer{}", s + 1));
                (0..layers[s])
                    .map(|j| {
                        let stride = if s > 0 && j == 0 { 2 } else { 1 };
                        let block = Bottleneck::load(stage.pp(j), inplanes, planes, stride);
                        inplanes = planes * 4;
                        block
                    })
                    .collect()
            })
            .collect();
        ModifiedResNet { stem, stages }
    }

    /// Channels of each stage's output.
    pub fn channels(width: usize) -> [usize; 4] {
        [4 * width, 8 * width, 16 * width, 32 * width]
    }

    /// The four stages' maps at strides 4, 8, 16 and 32. `[b, 3, H, W] -> 4 x [b, c_i, H/s_i, W/s_i]`
    pub fn forward(&self, pixels: Tensor<4>) -> Vec<Tensor<4>> {
        let mut x = pixels;
        for conv in &self.stem {
            x = relu(conv.forward(x));
        }
        x = pool(x, 2);
        let mut outs = Vec::with_capacity(4);
        for stage in &self.stages {
            for block in stage {
                x = block.forward(x);
            }
            outs.push(x.clone());
        }
        outs
    }
}
