//! The CLIP text tower (transformers `CLIPTextModel`; GroupViT's text tower is the same): causal transformer, final layer norm,
//! pooled at the end-of-text token.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::TextConfig;
use crate::error::{Error, Result};
use crate::loader::Scope;
use crate::nn::{EmbeddingTable, EncoderLayer, LayerNorm, load_layers};

#[derive(Debug, Clone)]
pub struct TextTransformer {
    /// `embeddings.token_embedding.weight`, `[vocab, width]`: on the CPU backend held as the
    /// file stores it (int8 in a q8 file), on a GPU in f32 blocks of rows (see
    /// [`EmbeddingTable`]).
    pub token_embedding: EmbeddingTable,
    /// `embeddings.position_embedding.weight`, `[context, width]`.
    pub position_embedding: Tensor<2>,
    pub layers: Vec<EncoderLayer>,
    pub final_layer_norm: LayerNorm,
    pub eos_token_id: i64,
    pub context: usize,
    pub vocab_size: usize,
}

impl TextTransformer {
    /// `embeddings.*`, `encoder.layers.*`, `final_layer_norm`.
    pub fn load(mut p: Scope, cfg: &TextConfig) -> Self {
        let d = cfg.hidden_size;
        let mut embeddings = p.pp("embeddings");
        let token_embedding = EmbeddingTable::load(&mut embeddings, "token_embedding.weight", [cfg.vocab_size, d]);
        let position_embedding = embeddings.tensor("position_embedding.weight", [cfg.max_position_embeddings, d]);
        TextTransformer {
            token_embedding,
            position_embedding,
            layers: load_layers(p.pp("encoder.layers"), cfg.num_hidden_layers, cfg.dims()),
            final_layer_norm: LayerNorm::load(p.pp("final_layer_norm"), d, cfg.layer_norm_eps),
            eos_token_id: cfg.eos_token_id,
            context: cfg.max_position_embeddings,
            vocab_size: cfg.vocab_size,
        }
    }

    /// Refuse what the tower cannot embed: no rows, rows of different lengths, or ids outside
    /// the vocabulary.
    fn check_ids(&self, ids: &[Vec<u32>]) -> Result<()> {
        let vocab = self.vocab_size as u32;
        if let Some(bad) = ids.iter().flatten().find(|&&t| t >= vocab) {
            return Err(Error::invalid(format!("token id {bad} is outside the model's vocabulary of {vocab}")));
        }
        if ids.is_empty() {
            return Err(Error::invalid("no text to embed"));
        }
        if ids.iter().any(|row| row.len() != ids[0].len() || row.is_empty() || row.len() > self.context) {
            return Err(Error::invalid(format!("token rows must be of one length in 1..={}", self.context)));
        }
        Ok(())
    }

    /// Where each sequence is pooled. Configs from before transformers PR #24773 say
    /// `eos_token_id = 2` and pool at the largest id; newer ones at the first `eos_token_id`.
    fn pool_positions(&self, ids: &[Vec<u32>]) -> Vec<usize> {
        ids.iter()
            .map(|seq| {
                let first_max = |pred: &dyn Fn(u32) -> bool| seq.iter().position(|&t| pred(t)).unwrap_or(0);
                if self.eos_token_id == 2 {
                    let max = seq.iter().copied().max().unwrap_or(0);
                    first_max(&|t| t == max)
                } else {
                    first_max(&|t| t as i64 == self.eos_token_id)
                }
            })
            .collect()
    }

    /// Causal mask `[n, n]`: 0 on and below the diagonal, the float minimum above (as
    /// transformers' `create_causal_mask`).
    fn causal_mask(n: usize, device: &Device) -> Tensor<2> {
        let values: Vec<f32> = (0..n * n).map(|i| if i % n > i / n { f32::MIN } else { 0.0 }).collect();
        Tensor::from_data(TensorData::new(values, [n, n]), device)
    }

    /// The token table's rows for `ids` (checked). `-> [b, n, width]`
    fn embed_tokens(&self, ids: &[Vec<u32>]) -> Result<Tensor<3>> {
        let (b, n) = (ids.len(), ids[0].len());
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        Ok(self.token_embedding.lookup(&flat)?.reshape([b, n, self.token_embedding.width()]))
    }

    /// Pooled (EOT) features after the final layer norm. `ids`: equal-length token rows.
    /// `-> [b, width]`
    pub fn forward(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        self.check_ids(ids)?;
        let device = self.position_embedding.device();
        let (b, n) = (ids.len(), ids[0].len());
        let d = self.position_embedding.dims()[1];
        let mut x = self.embed_tokens(ids)?.add(self.position_embedding.clone().slice([0..n, 0..d]).unsqueeze::<3>());
        let mask = Self::causal_mask(n, &device);
        for layer in &self.layers {
            x = layer.forward(x, Some(mask.clone()));
        }
        let x = self.final_layer_norm.forward(x).reshape([b * n, d]);
        let rows: Vec<i32> = self.pool_positions(ids).iter().enumerate().map(|(i, &p)| (i * n + p) as i32).collect();
        Ok(x.select(0, Tensor::<1, Int>::from_data(TensorData::new(rows, [b]), &device)))
    }
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use burn::tensor::Device;

    use super::TextTransformer;
    use crate::clip::config::TextConfig;
    use crate::loader::WeightLoader;
    use crate::nn::EmbeddingTable;

    /// A token table cut into blocks of rows (as a GPU device with small buffers gets it) gives
    /// the very features the whole table gives, ids from every block, in any order.
    #[test]
    fn a_table_in_blocks_embeds_as_the_whole_table() {
        let device = Device::flex();
        let cfg = TextConfig {
            vocab_size: 40,
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            max_position_embeddings: 6,
            eos_token_id: 39,
            ..TextConfig::CLIP
        };
        let mut loader = WeightLoader::random(&device);
        let whole = TextTransformer::load(loader.pp("text"), &cfg);
        assert_eq!(whole.token_embedding.blocks(), 0, "held on the host on the CPU backend");
        let all: Vec<u32> = (0..40).collect();
        let table = whole.token_embedding.lookup(&all).unwrap();
        let mut blocked = whole.clone();
        blocked.token_embedding = EmbeddingTable::from_blocks(
            (0..40).step_by(7).map(|r| table.clone().slice([r..(r + 7).min(40), 0..8])).collect(),
            7,
        );
        let ids = vec![vec![38, 0, 7, 6, 21, 39], vec![13, 14, 35, 1, 20, 39]];
        let (want, got) = (whole.forward(&ids).unwrap(), blocked.forward(&ids).unwrap());
        let (want, got) = (want.into_data().try_to_vec::<f32>().unwrap(), got.into_data().try_to_vec::<f32>().unwrap());
        assert_eq!(blocked.token_embedding.blocks(), 6);
        assert_eq!(got, want);
    }
}
