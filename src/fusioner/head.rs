//! Fusioner's trainable head (chaofanma/Fusioner @ 01985ed, `model/fusion.py`,
//! `model/decoder.py`, `model/head.py`), named after the repository's `state_dict` keys so a
//! head trained there converts by prefix alone.
//!
//! - [`Fusion`]: image tokens (`LN -> Linear -> LN`) and class tokens (`LN -> Linear`, plus one
//!   shared class embedding) concatenated, pre-LN transformer blocks (one `qkv` projection, exact
//!   GELU), a final LN, and a `d x d` projection for each side.
//! - [`Decoder`]: the patch tokens as a grid, three times `conv3x3 -> InstanceNorm -> ReLU ->
//!   bilinear x2`, then `conv3x3 -> InstanceNorm -> ReLU -> conv1x1`, bilinear to the crop (from
//!   operations that train on every backend).
//! - the head: cosine of each pixel's features with each class's, over a temperature.
//!
//! Every parameter is reachable by name through [`FusionHead::visit`], which is how training
//! tracks gradients, steps the optimiser and saves checkpoints.

use std::fmt::Display;

use burn::tensor::activation::{gelu, relu, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use crate::loader::{Scope, WeightLoader};
use crate::nn::{Conv2d, LayerNorm, Linear, Rng, l2_normalize, resize_bilinear_trainable as resize_bilinear};

/// The head's sizes (`fusion_config` in `config.json`; the repository's `--transformer_*`
/// flags, defaults as there).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FusionConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub layer_norm_eps: f64,
    /// Logits are cosines divided by this.
    pub temperature: f32,
}

impl Default for FusionConfig {
    /// The repository's defaults: 512 wide, 12 blocks of 8 heads, MLP 2048, temperature 0.07.
    fn default() -> Self {
        FusionConfig {
            hidden_size: 512,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            intermediate_size: 2048,
            layer_norm_eps: 1e-5,
            temperature: 0.07,
        }
    }
}

impl FusionConfig {
    pub fn validate(&self) -> crate::error::Result<()> {
        use crate::network::{Fields, limits};
        let f = Fields("fusion_config");
        f.size("hidden_size", self.hidden_size, limits::WIDTH)?;
        f.size("num_hidden_layers", self.num_hidden_layers, limits::LAYERS)?;
        f.size("num_attention_heads", self.num_attention_heads, limits::WIDTH)?;
        f.size("intermediate_size", self.intermediate_size, limits::INTERMEDIATE)?;
        f.eps("layer_norm_eps", self.layer_norm_eps)?;
        f.positive("temperature", f64::from(self.temperature))?;
        let ok = self.hidden_size > 0
            && self.num_attention_heads > 0
            && self.hidden_size.is_multiple_of(self.num_attention_heads)
            && self.num_hidden_layers > 0
            && self.intermediate_size > 0
            && self.temperature > 0.0;
        if !ok {
            return Err(crate::error::Error::Config(format!(
                "fusion_config needs positive sizes, hidden_size divisible by num_attention_heads and a positive temperature; got {self:?}"
            )));
        }
        Ok(())
    }
}

/// Something that walks the head's parameters by checkpoint key (each may be replaced).
pub trait ParamVisitor {
    fn visit<const D: usize>(&mut self, name: &str, tensor: &mut Tensor<D>);
}

/// Where the head's weights come from: a checkpoint (its keys under a scope), or PyTorch's
/// default initialisation.
pub enum Source<'l, 'c, 'a> {
    Loader(Scope<'l, 'c, 'a>),
    Init(&'l mut Init),
}

/// PyTorch's default initialisation, from a seeded generator: `nn.Linear`/`nn.Conv2d` weights
/// and biases uniform in `±1/sqrt(fan_in)`, layer norms `(1, 0)`, the class embedding standard
/// normal (`nn.Embedding`), the projections `d^-½ · N(0, 1)` (as `Fusion.__init__`).
pub struct Init {
    rng: Rng,
    device: Device,
}

impl Init {
    pub fn new(seed: u64, device: &Device) -> Self {
        Init { rng: Rng::new(seed ^ 0x853c_49e6_748f_ea9b), device: device.clone() }
    }

    fn next(&mut self) -> f64 {
        self.rng.unit()
    }

    fn uniform<const D: usize>(&mut self, shape: [usize; D], bound: f64) -> Tensor<D> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| ((self.next() * 2.0 - 1.0) * bound) as f32).collect();
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }

    fn normal<const D: usize>(&mut self, shape: [usize; D], scale: f64) -> Tensor<D> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| {
                let (u, v) = (self.next().max(1e-300), self.next());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() * scale) as f32
            })
            .collect();
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }

    fn constant<const D: usize>(&mut self, shape: [usize; D], value: f32) -> Tensor<D> {
        Tensor::full(shape, value, &self.device)
    }
}

impl<'c, 'a> Source<'_, 'c, 'a> {
    /// The weights under `name`: a narrower scope of the checkpoint, or the same generator (which
    /// draws in the order the weights are asked for, whatever their names).
    fn pp(&mut self, name: impl Display) -> Source<'_, 'c, 'a> {
        match self {
            Source::Loader(scope) => Source::Loader(scope.pp(name)),
            Source::Init(init) => Source::Init(init),
        }
    }

    fn tensor<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        init: impl FnOnce(&mut Init) -> Tensor<D>,
    ) -> Tensor<D> {
        match self {
            Source::Loader(scope) => scope.tensor(name, shape),
            Source::Init(rng) => init(rng),
        }
    }

    /// `weight` `[d_out, d_in]` and `bias`.
    fn linear(mut self, d_in: usize, d_out: usize) -> Linear {
        let bound = (d_in as f64).powf(-0.5);
        // Trained and saved as PyTorch's `[out, in]`, on burn's ops.
        Linear::out_in(
            self.tensor("weight", [d_out, d_in], |r| r.uniform([d_out, d_in], bound)),
            Some(self.tensor("bias", [d_out], |r| r.uniform([d_out], bound))),
        )
    }

    /// `weight` and `bias` `[d]`.
    fn layer_norm(mut self, d: usize, eps: f64) -> LayerNorm {
        // On the GPU kernel while it infers; a training step's tracked parameters take burn's
        // ops (`LayerNorm::forward`).
        LayerNorm::new(
            self.tensor("weight", [d], |r| r.constant([d], 1.0)),
            self.tensor("bias", [d], |r| r.constant([d], 0.0)),
            eps,
        )
    }

    /// `weight` `[c, c, kernel, kernel]` and `bias`.
    fn conv(mut self, c: usize, kernel: usize) -> Conv2d {
        let bound = ((c * kernel * kernel) as f64).powf(-0.5);
        let shape = [c, c, kernel, kernel];
        Conv2d {
            weight: self.tensor("weight", shape, |r| r.uniform(shape, bound)),
            bias: Some(self.tensor("bias", [c], |r| r.uniform([c], bound))),
            stride: 1,
            padding: kernel / 2,
        }
    }
}

fn visit_linear(v: &mut impl ParamVisitor, name: &str, l: &mut Linear) {
    v.visit(&format!("{name}.weight"), &mut l.weight);
    if let Some(bias) = l.bias.as_mut() {
        v.visit(&format!("{name}.bias"), bias);
    }
}

fn visit_norm(v: &mut impl ParamVisitor, name: &str, n: &mut LayerNorm) {
    v.visit(&format!("{name}.weight"), &mut n.weight);
    v.visit(&format!("{name}.bias"), &mut n.bias);
}

fn visit_conv(v: &mut impl ParamVisitor, name: &str, c: &mut Conv2d) {
    v.visit(&format!("{name}.weight"), &mut c.weight);
    if let Some(bias) = c.bias.as_mut() {
        v.visit(&format!("{name}.bias"), bias);
    }
}

/// `utils/model_utils.py` `Block`: pre-LN attention (one `qkv` projection) and MLP.
#[derive(Debug, Clone)]
pub struct Block {
    pub norm1: LayerNorm,
    pub qkv: Linear,
    pub proj: Linear,
    pub norm2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub heads: usize,
}

impl Block {
    fn build(mut src: Source, cfg: &FusionConfig) -> Self {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        Block {
            norm1: src.pp("norm1").layer_norm(d, eps),
            qkv: src.pp("attn.qkv").linear(d, 3 * d),
            proj: src.pp("attn.proj").linear(d, d),
            norm2: src.pp("norm2").layer_norm(d, eps),
            fc1: src.pp("mlp.fc1").linear(d, cfg.intermediate_size),
            fc2: src.pp("mlp.fc2").linear(cfg.intermediate_size, d),
            heads: cfg.num_attention_heads,
        }
    }

    fn visit(&mut self, v: &mut impl ParamVisitor, prefix: &str) {
        visit_norm(v, &format!("{prefix}.norm1"), &mut self.norm1);
        visit_linear(v, &format!("{prefix}.attn.qkv"), &mut self.qkv);
        visit_linear(v, &format!("{prefix}.attn.proj"), &mut self.proj);
        visit_norm(v, &format!("{prefix}.norm2"), &mut self.norm2);
        visit_linear(v, &format!("{prefix}.mlp.fc1"), &mut self.fc1);
        visit_linear(v, &format!("{prefix}.mlp.fc2"), &mut self.fc2);
    }

    /// `[b, n, d] -> [b, n, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let (h, hd) = (self.heads, d / self.heads);
        // reshape(B, N, 3, heads, hd).permute(2, 0, 3, 1, 4)
        let qkv = self.qkv.forward(self.norm1.forward(x.clone())).reshape([b, n, 3, h, hd]);
        let part =
            |i: usize| qkv.clone().slice([0..b, 0..n, i..i + 1, 0..h, 0..hd]).reshape([b, n, h, hd]).swap_dims(1, 2);
        let (q, k, v) = (part(0), part(1), part(2));
        let attn = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar((hd as f64).powf(-0.5)), 3);
        let y = attn.matmul(v).swap_dims(1, 2).reshape([b, n, d]);
        let x = x.add(self.proj.forward(y));
        let m = self.fc2.forward(gelu(self.fc1.forward(self.norm2.forward(x.clone()))));
        x.add(m)
    }
}

/// `model/fusion.py` `Fusion`.
#[derive(Debug, Clone)]
pub struct Fusion {
    pub visual_norm_in: LayerNorm,
    pub visual_linear: Linear,
    pub visual_norm_out: LayerNorm,
    pub text_norm: LayerNorm,
    pub text_linear: Linear,
    /// `cls_emb`, `[1, d]`, added to every class token.
    pub cls_emb: Tensor<2>,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    /// `proj_patch`, `proj_classes`: `[d, d]`, applied as `x @ P`.
    pub proj_patch: Tensor<2>,
    pub proj_classes: Tensor<2>,
}

impl Fusion {
    /// `visual_proj.*`, `text_proj.*`, `cls_emb`, `blocks.*`, `norm`, `proj_patch`, `proj_classes`.
    fn build(mut src: Source, cfg: &FusionConfig, visual_dim: usize, text_dim: usize) -> Self {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let scale = (d as f64).powf(-0.5);
        Fusion {
            visual_norm_in: src.pp("visual_proj.0").layer_norm(visual_dim, eps),
            visual_linear: src.pp("visual_proj.1").linear(visual_dim, d),
            visual_norm_out: src.pp("visual_proj.2").layer_norm(d, eps),
            text_norm: src.pp("text_proj.0").layer_norm(text_dim, eps),
            text_linear: src.pp("text_proj.1").linear(text_dim, d),
            cls_emb: src.tensor("cls_emb", [1, d], |r| r.normal([1, d], 1.0)),
            blocks: (0..cfg.num_hidden_layers).map(|i| Block::build(src.pp("blocks").pp(i), cfg)).collect(),
            norm: src.pp("norm").layer_norm(d, eps),
            proj_patch: src.tensor("proj_patch", [d, d], |r| r.normal([d, d], scale)),
            proj_classes: src.tensor("proj_classes", [d, d], |r| r.normal([d, d], scale)),
        }
    }

    fn visit(&mut self, v: &mut impl ParamVisitor) {
        visit_norm(v, "fusion.visual_proj.0", &mut self.visual_norm_in);
        visit_linear(v, "fusion.visual_proj.1", &mut self.visual_linear);
        visit_norm(v, "fusion.visual_proj.2", &mut self.visual_norm_out);
        visit_norm(v, "fusion.text_proj.0", &mut self.text_norm);
        visit_linear(v, "fusion.text_proj.1", &mut self.text_linear);
        v.visit("fusion.cls_emb", &mut self.cls_emb);
        for (i, block) in self.blocks.iter_mut().enumerate() {
            block.visit(v, &format!("fusion.blocks.{i}"));
        }
        visit_norm(v, "fusion.norm", &mut self.norm);
        v.visit("fusion.proj_patch", &mut self.proj_patch);
        v.visit("fusion.proj_classes", &mut self.proj_classes);
    }

    /// Image tokens `[b, n, visual_dim]` and class embeddings `[b, k, text_dim]` ->
    /// (patch features `[b, n, d]`, class features `[b, k, d]`).
    pub fn forward(&self, visual: Tensor<3>, text: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let n = visual.dims()[1];
        let k = text.dims()[1];
        let x = self.visual_norm_out.forward(self.visual_linear.forward(self.visual_norm_in.forward(visual)));
        let t = self.text_linear.forward(self.text_norm.forward(text)).add(self.cls_emb.clone().unsqueeze::<3>());
        let mut x = Tensor::cat(vec![x, t], 1);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.norm.forward(x);
        let [b, _, d] = x.dims();
        let patches = x.clone().slice([0..b, 0..n, 0..d]).matmul(self.proj_patch.clone().unsqueeze::<3>());
        let classes = x.slice([0..b, n..n + k, 0..d]).matmul(self.proj_classes.clone().unsqueeze::<3>());
        (patches, classes)
    }
}

/// `nn.InstanceNorm2d` without affine parameters: each map of each image normalised over its
/// pixels (biased variance).
pub fn instance_norm(x: Tensor<4>, eps: f64) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let flat = x.reshape([b, c, h * w]);
    let mean = flat.clone().mean_dim(2);
    let centred = flat.sub(mean);
    let var = centred.clone().powf_scalar(2.0).mean_dim(2);
    centred.div(var.add_scalar(eps).sqrt()).reshape([b, c, h, w])
}

/// `model/decoder.py` `Decoder`.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// `conv_0` .. `conv_3` (3x3) and `conv_4` (1x1).
    pub convs: Vec<Conv2d>,
}

impl Decoder {
    /// `conv_0` .. `conv_4`.
    fn build(mut src: Source, d: usize) -> Self {
        Decoder { convs: (0..5).map(|i| src.pp(format!("conv_{i}")).conv(d, if i < 4 { 3 } else { 1 })).collect() }
    }

    fn visit(&mut self, v: &mut impl ParamVisitor) {
        for (i, conv) in self.convs.iter_mut().enumerate() {
            visit_conv(v, &format!("decoder.conv_{i}"), conv);
        }
    }

    /// Patch features `[b, gh*gw, d]` on a `gh x gw` grid -> the map before the last resize,
    /// `[b, d, 8 gh, 8 gw]`.
    pub fn forward(&self, patches: Tensor<3>, grid: (usize, usize)) -> Tensor<4> {
        let [b, _, d] = patches.dims();
        let (gh, gw) = grid;
        let mut x = patches.swap_dims(1, 2).reshape([b, d, gh, gw]);
        for (i, conv) in self.convs[..4].iter().enumerate() {
            x = relu(instance_norm(conv.forward(x), 1e-5));
            if i < 3 {
                x = resize_bilinear(x, gh << (i + 1), gw << (i + 1));
            }
        }
        self.convs[4].forward(x)
    }
}

/// The trainable part of Fusioner: fusion, decoder and head.
#[derive(Debug, Clone)]
pub struct FusionHead {
    pub config: FusionConfig,
    pub fusion: Fusion,
    pub decoder: Decoder,
}

/// What one crop gives, for parity tests and training.
pub struct HeadOutput {
    pub patches: Tensor<3>,
    pub classes: Tensor<3>,
    /// The decoder's map before the last resize, `[b, d, 8 gh, 8 gw]`.
    pub decoder_map: Tensor<4>,
    /// `[b, k, crop, crop]`.
    pub logits: Tensor<4>,
}

impl FusionHead {
    /// From a checkpoint (`fusion.*`, `decoder.*`).
    pub fn load(loader: &mut WeightLoader, config: FusionConfig, visual_dim: usize, text_dim: usize) -> Self {
        Self::build(Source::Loader(loader.pp("")), config, visual_dim, text_dim)
    }

    /// Freshly initialised as PyTorch would, from `seed`.
    pub fn init(config: FusionConfig, visual_dim: usize, text_dim: usize, seed: u64, device: &Device) -> Self {
        Self::build(Source::Init(&mut Init::new(seed, device)), config, visual_dim, text_dim)
    }

    fn build(mut src: Source, config: FusionConfig, visual_dim: usize, text_dim: usize) -> Self {
        let fusion = Fusion::build(src.pp("fusion"), &config, visual_dim, text_dim);
        let decoder = Decoder::build(src.pp("decoder"), config.hidden_size);
        FusionHead { config, fusion, decoder }
    }

    /// Every parameter, by checkpoint key, in a fixed order.
    pub fn visit(&mut self, v: &mut impl ParamVisitor) {
        self.fusion.visit(v);
        self.decoder.visit(v);
    }

    /// Normalised image tokens `[b, gh*gw, visual_dim]` and class embeddings `[b, k, text_dim]`
    /// -> logits `[b, k, crop, crop]` (and the steps before).
    pub fn forward(&self, visual: Tensor<3>, grid: (usize, usize), text: Tensor<3>, crop: usize) -> HeadOutput {
        let (patches, classes) = self.fusion.forward(visual, text);
        let decoder_map = self.decoder.forward(patches.clone(), grid);
        let logits = logits(resize_bilinear(decoder_map.clone(), crop, crop), classes.clone(), self.config.temperature);
        HeadOutput { patches, classes, decoder_map, logits }
    }
}

/// `model/head.py` `Head`: cosine of pixel and class features over `temperature`.
/// `[b, d, h, w] x [b, k, d] -> [b, k, h, w]`
pub fn logits(features: Tensor<4>, classes: Tensor<3>, temperature: f32) -> Tensor<4> {
    let [b, d, h, w] = features.dims();
    let k = classes.dims()[1];
    // Channels-first throughout (no transpose of the pixel maps): class rows times pixel
    // columns, each column divided by its norm.
    let pixels = features.reshape([b, d, h * w]);
    let norms = pixels.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(crate::nn::tiny(&pixels, 1e-12));
    let scores = l2_normalize(classes).matmul(pixels).div(norms);
    scores.reshape([b, k, h, w]).div_scalar(temperature)
}
