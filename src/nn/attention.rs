//! Multi-head attention with separate q/k/v projections (transformers `CLIPAttention`, SAM's
//! `SamAttention` with its narrower inner width), its pieces exposed so that the dense
//! engine's last-block variants can recombine them.

use std::ops::Range;

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::Linear;
use super::kernels::{Kernel, host, packed};
use super::linear::{host_tensor, host_values};
use crate::loader::Scope;

/// The most score elements (batch x heads x queries x keys) the CPU path holds at once: 32 MiB
/// (a ViT-B/16 at 224 needs 1.8 MiB a layer; SAM's global attention far more, and keeps the
/// backend's routine, which works a tile at a time).
const HOST_SCORES: usize = 8 << 20;

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub num_heads: usize,
    /// Without a mask: [`Kernel::Packed`] where every projection is packed (the CPU backend in
    /// the web build, and natively with AVX-512), all of it on the host; [`Kernel::Host`] on
    /// the CPU backend otherwise, burn's projections and products with the host's softmax;
    /// elsewhere, and with a mask, burn's fused attention.
    pub kernel: Kernel,
}

impl Attention {
    /// The four projections, on the kernel they allow (see [`Attention::kernel`]).
    pub fn new(q_proj: Linear, k_proj: Linear, v_proj: Linear, out_proj: Linear, num_heads: usize) -> Self {
        let packed = [&q_proj, &k_proj, &v_proj, &out_proj].iter().all(|l| l.packed().is_some());
        let kernel = match Kernel::on(&q_proj.weight.device()) {
            Kernel::Host if packed => Kernel::Packed,
            Kernel::Host => Kernel::Host,
            _ => Kernel::Burn,
        };
        Attention { q_proj, k_proj, v_proj, out_proj, num_heads, kernel }
    }

    /// `{q,k,v,out}_proj`, each `d -> d` with bias.
    pub fn load(p: Scope, d: usize, heads: usize) -> Self {
        Self::load_narrow(p, d, d, heads)
    }

    /// Queries, keys and values projected to `inner` channels (split over the heads), and
    /// `out_proj` back to `d`.
    pub fn load_narrow(mut p: Scope, d: usize, inner: usize, heads: usize) -> Self {
        let mut linear = |name: &str, i: usize, o: usize| Linear::load(p.pp(name), i, o, true);
        let k_proj = linear("k_proj", d, inner);
        let v_proj = linear("v_proj", d, inner);
        let q_proj = linear("q_proj", d, inner);
        Attention::new(q_proj, k_proj, v_proj, linear("out_proj", inner, d), heads)
    }

    /// `[b, n, d] -> [b, heads, n, d / heads]`
    pub fn split_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, n, d] = x.dims();
        x.reshape([b, n, self.num_heads, d / self.num_heads]).swap_dims(1, 2)
    }

    /// `[b, heads, n, hd] -> [b, n, heads * hd]`
    pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
        let [b, h, n, hd] = x.dims();
        x.swap_dims(1, 2).reshape([b, n, h * hd])
    }

    /// Queries, keys and values, each `[b, heads, n, hd]`.
    pub fn qkv(&self, x: Tensor<3>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        (
            self.split_heads(self.q_proj.forward(x.clone())),
            self.split_heads(self.k_proj.forward(x.clone())),
            self.split_heads(self.v_proj.forward(x)),
        )
    }

    /// `softmax(a·bᵀ·hd^-½ + bias)` per head. `[b, h, n, hd] x 2 -> [b, h, n, n]`
    pub fn weights(a: Tensor<4>, b: Tensor<4>, bias: Option<Tensor<2>>) -> Tensor<4> {
        let scale = (a.dims()[3] as f64).powf(-0.5);
        let scores = a.matmul(b.swap_dims(2, 3));
        match bias {
            None => host::softmax(scores, scale as f32).unwrap_or_else(|s| softmax(s.mul_scalar(scale), 3)),
            Some(bias) => {
                let scores = scores.mul_scalar(scale).add(bias.unsqueeze::<4>());
                host::softmax(scores, 1.0).unwrap_or_else(|s| softmax(s, 3))
            }
        }
    }

    /// `out_proj(weights · v)`, heads merged. `[b, h, n, n] x [b, h, n, hd] -> [b, n, d]`
    pub fn mix(&self, weights: Tensor<4>, v: Tensor<4>) -> Tensor<3> {
        self.out_proj.forward(Self::merge_heads(weights.matmul(v)))
    }

    /// [`Attention::mix`] with the weights made a block at a time: `weights(heads, queries)`
    /// gives the weights of those heads and queries, `[b, heads.len(), queries.len(), n_k]`,
    /// each block within `budget` elements (a chunk of heads, and of queries when one head is
    /// more). The whole at once where it fits, or where there is no budget (the CPU backend:
    /// see [`crate::device::buffer_budget`]); long sequences on a GPU with small buffers
    /// otherwise need a `[b, heads, n, n]` buffer past its binding limit.
    /// `v`: `[b, heads, n_k, hd]` -> `[b, n_q, d]`
    pub fn mix_in_blocks(
        &self,
        v: Tensor<4>,
        n_q: usize,
        budget: Option<usize>,
        weights: impl Fn(Range<usize>, Range<usize>) -> Tensor<4>,
    ) -> Tensor<3> {
        let [b, h, n_k, hd] = v.dims();
        let per_head = b * n_q * n_k;
        let budget = match budget {
            Some(budget) if h * per_head > budget => budget,
            _ => return self.mix(weights(0..h, 0..n_q), v),
        };
        let heads = (budget / per_head.max(1)).clamp(1, h);
        let rows = if heads > 1 { n_q } else { (budget / (b * n_k).max(1)).clamp(1, n_q) };
        let mut by_head = Vec::with_capacity(h.div_ceil(heads));
        for h0 in (0..h).step_by(heads) {
            let hs = h0..(h0 + heads).min(h);
            let v = v.clone().slice([0..b, hs.clone(), 0..n_k, 0..hd]);
            let by_row: Vec<Tensor<4>> = (0..n_q)
                .step_by(rows)
                .map(|r0| weights(hs.clone(), r0..(r0 + rows).min(n_q)).matmul(v.clone()))
                .collect();
            by_head.push(Tensor::cat(by_row, 2));
        }
        self.out_proj.forward(Self::merge_heads(Tensor::cat(by_head, 1)))
    }

    /// Queries, keys and values each from their own input (`[b, n_q, d]`, `[b, n_k, d]` twice);
    /// `mask` is added to the scores (`[n_q, n_k]`, 0 or very negative).
    /// The backend's fused attention: one routine per head on the CPU, and on the GPU a flash
    /// kernel when there is no mask (fewer dispatches than scores, softmax and product apart).
    /// On the CPU backend, without a mask and while the scores are small, scores, the host's
    /// softmax and the product apart instead: the fused routine's softmax calls the scalar
    /// `expf` (see `kernels::host`). Where the projections are packed (the CPU backend in the web
    /// build, and natively with AVX-512), without a mask, all of it runs on the host
    /// (`attend_packed`).
    pub fn attend(&self, query: Tensor<3>, key: Tensor<3>, value: Tensor<3>, mask: Option<Tensor<2>>) -> Tensor<3> {
        self.attend_inputs(query, key, value, mask, Inputs::Apart)
    }

    /// [`Attention::attend`], told which inputs are one tensor.
    fn attend_inputs(
        &self,
        query: Tensor<3>,
        key: Tensor<3>,
        value: Tensor<3>,
        mask: Option<Tensor<2>>,
        inputs: Inputs,
    ) -> Tensor<3> {
        if self.kernel == Kernel::Packed
            && mask.is_none()
            && let Some(mixed) = self.attend_packed(&query, &key, &value, inputs)
        {
            return mixed;
        }
        let q = self.split_heads(self.q_proj.forward(query));
        let k = self.split_heads(self.k_proj.forward(key));
        let v = self.split_heads(self.v_proj.forward(value));
        let ([b, h, n_q, _], n_k) = (q.dims(), k.dims()[2]);
        if self.kernel == Kernel::Host && mask.is_none() && b * h * n_q * n_k <= HOST_SCORES {
            return self.mix(Self::weights(q, k, None), v);
        }
        // Scores past what one GPU buffer should hold: a block of heads and queries at a time.
        if let Some(budget) = crate::device::buffer_budget(&q.device()).map(|bytes| bytes / size_of::<f32>())
            && b * h * n_q * n_k > budget
        {
            let hd = q.dims()[3];
            return self.mix_in_blocks(v, n_q, Some(budget), |hs, rows| {
                let bias = mask.as_ref().map(|m| m.clone().slice([rows.clone(), 0..n_k]));
                let q = q.clone().slice([0..b, hs.clone(), rows, 0..hd]);
                Self::weights(q, k.clone().slice([0..b, hs, 0..n_k, 0..hd]), bias)
            });
        }
        let bias = mask.map(|m| m.unsqueeze::<4>());
        let mixed = attention(q, k, v, None, bias, AttentionModuleOptions::default());
        self.out_proj.forward(Self::merge_heads(mixed))
    }

    /// [`Attention::attend`] without a mask where the projections are packed on the host (the
    /// CPU backend in the web build, and natively with AVX-512): projections, products, softmax
    /// and `out_proj` all on the host against packed operands, one read of each distinct input
    /// and one upload at the end. The projections of one input run side by side, and attention
    /// with `out_proj` per band of queries, so that where the build has threads each takes one
    /// hand-over to them.
    /// `None` elsewhere.
    fn attend_packed(
        &self,
        query: &Tensor<3>,
        key: &Tensor<3>,
        value: &Tensor<3>,
        inputs: Inputs,
    ) -> Option<Tensor<3>> {
        let (Some(q_proj), Some(k_proj), Some(v_proj), Some(out_proj)) =
            (self.q_proj.packed(), self.k_proj.packed(), self.v_proj.packed(), self.out_proj.packed())
        else {
            return None;
        };
        let ([b, n_q, _], [_, n_k, _]) = (query.dims(), key.dims());
        let device = query.device();
        let inner = self.q_proj.d_out();
        // Columns from `first` on, rows `stride` apart.
        fn rows(values: &[f32], stride: usize, first: usize) -> packed::Rows<'_> {
            packed::Rows { values: &values[first.min(values.len())..], stride }
        }
        let (q, kv, v);
        let [q, k, v] = match inputs {
            Inputs::One => {
                q = packed::side_by_side(&[q_proj, k_proj, v_proj], &host_values(query.clone()), b * n_q);
                [rows(&q, 3 * inner, 0), rows(&q, 3 * inner, inner), rows(&q, 3 * inner, 2 * inner)]
            }
            Inputs::KeyValue => {
                q = q_proj.matmul(&host_values(query.clone()), b * n_q);
                kv = packed::side_by_side(&[k_proj, v_proj], &host_values(key.clone()), b * n_k);
                [rows(&q, inner, 0), rows(&kv, 2 * inner, 0), rows(&kv, 2 * inner, inner)]
            }
            Inputs::Apart => {
                q = q_proj.matmul(&host_values(query.clone()), b * n_q);
                kv = k_proj.matmul(&host_values(key.clone()), b * n_k);
                v = v_proj.matmul(&host_values(value.clone()), b * n_k);
                [rows(&q, inner, 0), rows(&kv, inner, 0), rows(&v, inner, 0)]
            }
        };
        let out = packed::attention(q, k, v, [b, n_q, n_k, inner], self.num_heads, Some(out_proj));
        Some(host_tensor(out, [b, n_q, self.out_proj.d_out()], &device))
    }

    /// Queries from `query`, keys and values from `key` (self-attention when both are the same).
    pub fn cross(&self, query: Tensor<3>, key: Tensor<3>, mask: Option<Tensor<2>>) -> Tensor<3> {
        self.attend_inputs(query, key.clone(), key, mask, Inputs::KeyValue)
    }

    /// Self-attention. `[b, n, d] -> [b, n, d]`
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2>>) -> Tensor<3> {
        self.attend_inputs(x.clone(), x.clone(), x, mask, Inputs::One)
    }
}

/// Which of attention's inputs are one tensor.
#[derive(Debug, Clone, Copy)]
enum Inputs {
    /// Queries, keys and values from one tensor (self-attention).
    One,
    /// Keys and values from one tensor.
    KeyValue,
    /// Three tensors.
    Apart,
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::Attention;
    use crate::loader::WeightLoader;

    /// The host path (packed projections, `packed::attention`) gives what the backend's
    /// attention gives: self-attention, and a narrow cross-attention (SAM's decoder) with
    /// fewer queries than keys, with keys and values from one tensor or from two; and one large
    /// enough to be cut into bands where the build has threads.
    #[test]
    fn packed_and_plain_attention_agree() {
        let device = Device::flex();
        for (d, inner, heads, n_q, n_k) in [(24, 24, 3, 7, 7), (16, 8, 2, 3, 10), (64, 64, 4, 90, 90)] {
            let load = |pack| {
                let mut loader = WeightLoader::random(&device).with_packed_linear(pack);
                Attention::load_narrow(loader.pp("attn"), d, inner, heads)
            };
            let (plain, packed) = (load(false), load(true));
            assert!(plain.q_proj.packed().is_none() && packed.out_proj.packed().is_some());
            let query = Tensor::<3>::random([2, n_q, d], Distribution::Normal(0.0, 1.0), &device);
            let key = Tensor::<3>::random([2, n_k, d], Distribution::Normal(0.0, 1.0), &device);
            let value = Tensor::<3>::random([2, n_k, d], Distribution::Normal(0.0, 1.0), &device);
            let cases = [
                ("self", plain.forward(key.clone(), None), packed.forward(key.clone(), None)),
                (
                    "cross",
                    plain.cross(query.clone(), key.clone(), None),
                    packed.cross(query.clone(), key.clone(), None),
                ),
                (
                    "apart",
                    plain.attend(query.clone(), key.clone(), value.clone(), None),
                    packed.attend(query.clone(), key.clone(), value, None),
                ),
            ];
            for (what, want, got) in cases {
                crate::nn::assert_host_agrees(got, want, &format!("{what} {d}/{inner}"));
            }
        }
    }

    /// Weights made a block at a time (heads, then queries, as a small budget asks) mix to
    /// what the whole gives: budgets that cut heads, that cut one head's queries unevenly, and
    /// none.
    #[test]
    fn attention_in_blocks_mixes_as_the_whole() {
        let device = Device::flex();
        let (b, heads, n, hd) = (2, 3, 11, 4);
        let mut loader = WeightLoader::random(&device);
        let attn = Attention::load(loader.pp("attn"), heads * hd, heads);
        let random = || Tensor::<4>::random([b, heads, n, hd], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (random(), random(), random());
        let weights = |hs: std::ops::Range<usize>, rows: std::ops::Range<usize>| {
            let q = q.clone().slice([0..b, hs.clone(), rows, 0..hd]);
            Attention::weights(q, k.clone().slice([0..b, hs, 0..n, 0..hd]), None)
        };
        let whole = attn.mix_in_blocks(v.clone(), n, None, weights);
        assert_eq!(whole.dims(), [b, n, heads * hd]);
        for budget in [2 * b * n * n, b * n * 4, 1] {
            let blocks = attn.mix_in_blocks(v.clone(), n, Some(budget), weights);
            crate::nn::assert_host_agrees(blocks, whole.clone(), &format!("budget {budget}"));
        }
    }
}
