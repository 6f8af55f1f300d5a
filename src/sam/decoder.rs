//! SAM's mask decoder (transformers `SamMaskDecoder`, `SamTwoWayTransformer`): output tokens
//! (an IoU token and one token per mask) and the prompt's sparse embeddings attend to the image
//! embeddings and the image to them, in two-way blocks; the image embeddings are then
//! upsampled 4x by two transposed convolutions, and each mask token's hypernetwork MLP turns
//! it into the weights of its mask over the upsampled features. An MLP on the IoU token
//! predicts each mask's quality.

use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, relu};

use super::config::SamMaskDecoderConfig;
use crate::loader::Scope;
use crate::nn::{Attention, ConvTranspose2d, LayerNorm, LayerNorm2d, Linear, Mlp};

/// `SamFeedForward`: `proj_in`, then ReLU and a hidden layer `depth - 2` times, then
/// `proj_out`.
#[derive(Debug, Clone)]
pub struct FeedForward {
    pub proj_in: Linear,
    pub layers: Vec<Linear>,
    pub proj_out: Linear,
}

impl FeedForward {
    /// `proj_in`, `layers.*`, `proj_out`.
    fn load(mut p: Scope, dims: [usize; 3], depth: usize) -> Self {
        let [d_in, hidden, d_out] = dims;
        FeedForward {
            proj_in: Linear::load(p.pp("proj_in"), d_in, hidden, true),
            layers: (0..depth - 2).map(|i| Linear::load(p.pp("layers").pp(i), hidden, hidden, true)).collect(),
            proj_out: Linear::load(p.pp("proj_out"), hidden, d_out, true),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let x = self.layers.iter().fold(relu(self.proj_in.forward(x)), |x, layer| relu(layer.forward(x)));
        self.proj_out.forward(x)
    }
}

/// `SamTwoWayAttentionBlock`.
#[derive(Debug, Clone)]
pub struct TwoWayBlock {
    pub self_attn: Attention,
    pub layer_norm1: LayerNorm,
    pub cross_attn_token_to_image: Attention,
    pub layer_norm2: LayerNorm,
    pub mlp: Mlp,
    pub layer_norm3: LayerNorm,
    pub layer_norm4: LayerNorm,
    pub cross_attn_image_to_token: Attention,
    /// The first block's self-attention sees the tokens without their position (and replaces
    /// them, with no residual).
    pub skip_first_layer_pe: bool,
}

impl TwoWayBlock {
    fn load(mut p: Scope, cfg: &SamMaskDecoderConfig, first: bool) -> Self {
        let (d, heads, eps) = (cfg.hidden_size, cfg.num_attention_heads, cfg.layer_norm_eps);
        let inner = d / cfg.attention_downsample_rate;
        let norm = |p: Scope| LayerNorm::load(p, d, eps);
        TwoWayBlock {
            self_attn: Attention::load(p.pp("self_attn"), d, heads),
            layer_norm1: norm(p.pp("layer_norm1")),
            cross_attn_token_to_image: Attention::load_narrow(p.pp("cross_attn_token_to_image"), d, inner, heads),
            layer_norm2: norm(p.pp("layer_norm2")),
            mlp: Mlp::load_named(p.pp("mlp"), "lin1", "lin2", [d, cfg.mlp_dim, d], cfg.hidden_act),
            layer_norm3: norm(p.pp("layer_norm3")),
            layer_norm4: norm(p.pp("layer_norm4")),
            cross_attn_image_to_token: Attention::load_narrow(p.pp("cross_attn_image_to_token"), d, inner, heads),
            skip_first_layer_pe: first,
        }
    }

    /// `queries [b, t, d]` (positions `query_pe`), `keys [b, n, d]` (positions `key_pe`).
    fn forward(
        &self,
        queries: Tensor<3>,
        keys: Tensor<3>,
        query_pe: &Tensor<3>,
        key_pe: &Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let queries = if self.skip_first_layer_pe {
            self.self_attn.attend(queries.clone(), queries.clone(), queries, None)
        } else {
            let q = queries.clone().add(query_pe.clone());
            queries.clone().add(self.self_attn.attend(q.clone(), q, queries, None))
        };
        let queries = self.layer_norm1.forward(queries);
        let (q, k) = (queries.clone().add(query_pe.clone()), keys.clone().add(key_pe.clone()));
        let queries = self.layer_norm2.forward(queries.clone().add(self.cross_attn_token_to_image.attend(
            q,
            k,
            keys.clone(),
            None,
        )));
        let queries = self.layer_norm3.forward(queries.clone().add(self.mlp.forward(queries)));
        let (q, k) = (queries.clone().add(query_pe.clone()), keys.clone().add(key_pe.clone()));
        let keys =
            self.layer_norm4.forward(keys.add(self.cross_attn_image_to_token.attend(k, q, queries.clone(), None)));
        (queries, keys)
    }
}

/// What the decoder returns for one prompt.
#[derive(Debug, Clone)]
pub struct DecodedMasks {
    /// Low-resolution mask logits, `[masks, 4e, 4e]` (3 with multimask output, else 1).
    pub masks: Tensor<3>,
    /// Predicted IoU of each mask, `[masks]` (SAM; Open-Vocabulary SAM's head has none).
    pub iou: Option<Tensor<1>>,
}

/// What the decoder returns for a batch of prompts.
#[derive(Debug, Clone)]
pub struct BatchMasks {
    /// `[prompts, masks, 4e, 4e]`.
    pub masks: Tensor<4>,
    /// `[prompts, masks]`.
    pub iou: Option<Tensor<2>>,
}

#[derive(Debug, Clone)]
pub struct MaskDecoder {
    /// The first output token: SAM's `iou_token`, or Open-Vocabulary SAM's `label_token`.
    pub iou_token: Tensor<2>,
    pub mask_tokens: Tensor<2>,
    pub layers: Vec<TwoWayBlock>,
    pub final_attn_token_to_image: Attention,
    pub layer_norm_final_attn: LayerNorm,
    pub upscale_conv1: ConvTranspose2d,
    pub upscale_layer_norm: LayerNorm2d,
    pub upscale_conv2: ConvTranspose2d,
    pub output_hypernetworks_mlps: Vec<FeedForward>,
    pub iou_prediction_head: Option<FeedForward>,
}

impl MaskDecoder {
    /// `nn.LayerNorm`'s default epsilon: the final norm is built without the config's.
    const FINAL_EPS: f64 = 1e-5;
    /// `SamLayerNorm`'s default epsilon, for the upscaling norm.
    const UPSCALE_EPS: f64 = 1e-6;

    pub fn load(p: Scope, cfg: &SamMaskDecoderConfig) -> Self {
        Self::load_with(p, cfg, "iou_token", true)
    }

    /// Open-Vocabulary SAM's head: a `label_token` where SAM has its IoU token, and no IoU head.
    pub fn load_labelled(p: Scope, cfg: &SamMaskDecoderConfig) -> Self {
        Self::load_with(p, cfg, "label_token", false)
    }

    fn load_with(mut p: Scope, cfg: &SamMaskDecoderConfig, first: &str, iou: bool) -> Self {
        let d = cfg.hidden_size;
        let tokens = cfg.num_multimask_outputs + 1;
        let inner = d / cfg.attention_downsample_rate;
        let iou_token = p.pp(first).tensor("weight", [1, d]);
        let mask_tokens = p.tensor("mask_tokens.weight", [tokens, d]);
        let mut transformer = p.pp("transformer");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| TwoWayBlock::load(transformer.pp("layers").pp(i), cfg, i == 0))
            .collect();
        let final_attn_token_to_image =
            Attention::load_narrow(transformer.pp("final_attn_token_to_image"), d, inner, cfg.num_attention_heads);
        let layer_norm_final_attn = LayerNorm::load(transformer.pp("layer_norm_final_attn"), d, Self::FINAL_EPS);
        MaskDecoder {
            iou_token,
            mask_tokens,
            layers,
            final_attn_token_to_image,
            layer_norm_final_attn,
            upscale_conv1: ConvTranspose2d::load(p.pp("upscale_conv1"), d, d / 4, 2),
            upscale_layer_norm: LayerNorm2d::load(p.pp("upscale_layer_norm"), d / 4, Self::UPSCALE_EPS),
            upscale_conv2: ConvTranspose2d::load(p.pp("upscale_conv2"), d / 4, d / 8, 2),
            output_hypernetworks_mlps: (0..tokens)
                .map(|i| FeedForward::load(p.pp("output_hypernetworks_mlps").pp(i), [d, d, d / 8], 3))
                .collect(),
            iou_prediction_head: iou.then(|| {
                FeedForward::load(p.pp("iou_prediction_head"), [d, cfg.iou_head_hidden_dim, tokens], cfg.iou_head_depth)
            }),
        }
    }

    /// Masks for one prompt. `image [1, d, e, e]` and its positions `image_pe`, `sparse
    /// [1, n, d]`, `dense [1, d, e, e]`; `multimask`: the three masks of an ambiguous prompt,
    /// else the single one.
    pub fn forward(
        &self,
        image: Tensor<4>,
        image_pe: Tensor<4>,
        sparse: Tensor<3>,
        dense: Tensor<4>,
        multimask: bool,
    ) -> DecodedMasks {
        let batch = self.forward_batch(image, image_pe, sparse, dense, multimask);
        let [_, n, uh, uw] = batch.masks.dims();
        DecodedMasks { masks: batch.masks.reshape([n, uh, uw]), iou: batch.iou.map(|iou| iou.reshape([n])) }
    }

    /// Masks for `b` prompts of as many tokens each, side by side over one image (transformers'
    /// point batch: the image's embeddings repeated for each prompt). `sparse [b, n, d]`,
    /// `dense [1, d, e, e]` shared by all; masks `[b, m, 4e, 4e]`, IoU `[b, m]`.
    pub fn forward_batch(
        &self,
        image: Tensor<4>,
        image_pe: Tensor<4>,
        sparse: Tensor<3>,
        dense: Tensor<4>,
        multimask: bool,
    ) -> BatchMasks {
        let [_, d, e, _] = image.dims();
        let b = sparse.dims()[0];
        let token_count = self.mask_tokens.dims()[0] + 1;
        let output_tokens = Tensor::cat(vec![self.iou_token.clone(), self.mask_tokens.clone()], 0)
            .unsqueeze::<3>()
            .expand([b, token_count, d]);
        let tokens = Tensor::cat(vec![output_tokens, sparse], 1); // [b, t, d]
        let flatten = |x: Tensor<4>| x.reshape([1, d, e * e]).swap_dims(1, 2).expand([b, e * e, d]); // [b, e*e, d]
        let (mut queries, mut keys) = (tokens.clone(), flatten(image.add(dense)));
        let key_pe = flatten(image_pe);
        for layer in &self.layers {
            (queries, keys) = layer.forward(queries, keys, &tokens, &key_pe);
        }
        let (q, k) = (queries.clone().add(tokens), keys.clone().add(key_pe));
        let attended = self.final_attn_token_to_image.attend(q, k, keys.clone(), None);
        let queries = self.layer_norm_final_attn.forward(queries.add(attended));
        let iou_out = queries.clone().slice([0..b, 0..1, 0..d]).reshape([b, d]);
        let image = keys.swap_dims(1, 2).reshape([b, d, e, e]);
        let up = gelu(self.upscale_layer_norm.forward(self.upscale_conv1.forward(image)));
        let up = gelu(self.upscale_conv2.forward(up)); // [b, d/8, 4e, 4e]
        let [_, c, uh, uw] = up.dims();
        let hyper: Vec<Tensor<3>> = self
            .output_hypernetworks_mlps
            .iter()
            .enumerate()
            .map(|(i, mlp)| mlp.forward(queries.clone().slice([0..b, 1 + i..2 + i, 0..d])))
            .collect();
        let masks = Tensor::cat(hyper, 1).matmul(up.reshape([b, c, uh * uw])); // [b, tokens, 4e*4e]
        let range = if multimask && token_count > 2 { 1..token_count - 1 } else { 0..1 };
        let iou = self
            .iou_prediction_head
            .as_ref()
            .map(|head| head.forward(iou_out).reshape([b, token_count - 1]).slice([0..b, range.clone()]));
        let n = range.len();
        BatchMasks { masks: masks.slice([0..b, range, 0..uh * uw]).reshape([b, n, uh, uw]), iou }
    }
}
