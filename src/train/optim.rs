//! The optimiser and schedules of Fusioner's `train.py`: AdamW for the fusion transformer
//! (learning rate with linear warm-up from 0 then cosine decay, weight decay cosine-ramped on
//! the matrices, none on biases and 1-D parameters), Adam at a constant rate for the decoder;
//! `torch.optim.AdamW`'s arithmetic exactly. The loss is per-task binary cross-entropy over
//! the pixels that are not ignored.

use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fusioner::{FusionHead, ParamVisitor};

/// A tensor as saved: its name, shape and values.
pub type NamedValues = (String, Vec<usize>, Vec<f32>);

/// The repository's optimiser settings (`configs/__init__.py` defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    pub fusion_lr: f64,
    pub fusion_min_lr: f64,
    pub decoder_lr: f64,
    pub wd: f64,
    pub wd_end: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub warmup_epochs: usize,
    /// Epochs in all, warm-up included.
    pub epochs: usize,
}

impl Hyper {
    /// Learning rates and weight decays finite and not negative (a negative rate would climb
    /// the loss; 0 leaves a part as it is).
    pub fn validate(&self) -> Result<()> {
        let values = [
            ("--fusion-lr", self.fusion_lr),
            ("--fusion-min-lr", self.fusion_min_lr),
            ("--decoder-lr", self.decoder_lr),
            ("--wd", self.wd),
            ("--wd-end", self.wd_end),
        ];
        if let Some((flag, v)) = values.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
            return Err(Error::invalid(format!("{flag} must be 0 or more, got {v}")));
        }
        Ok(())
    }
}

impl Default for Hyper {
    /// `--fusion_lr 1e-3 --fusion_min_lr 2e-6 --decoder_lr 1e-3 --wd 0.01 --wd_end 0.4
    /// --beta1 0.9`, 10 warm-up epochs of 510.
    fn default() -> Self {
        Hyper {
            fusion_lr: 1e-3,
            fusion_min_lr: 2e-6,
            decoder_lr: 1e-3,
            wd: 0.01,
            wd_end: 0.4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup_epochs: 10,
            epochs: 510,
        }
    }
}

/// `utils.cosine_scheduler`: a linear warm-up from `start` over `warmup_epochs`, then a cosine
/// from `base` to `end`; one value per step.
pub fn cosine_schedule(base: f64, end: f64, epochs: usize, per_epoch: usize, warmup_epochs: usize) -> Vec<f64> {
    let warmup = (warmup_epochs * per_epoch).min(epochs * per_epoch);
    let mut out: Vec<f64> = match warmup {
        0 => Vec::new(),
        1 => vec![0.0],
        n => (0..n).map(|i| base * i as f64 / (n - 1) as f64).collect(),
    };
    let rest = epochs * per_epoch - warmup;
    out.extend(
        (0..rest).map(|i| end + 0.5 * (base - end) * (1.0 + (std::f64::consts::PI * i as f64 / rest as f64).cos())),
    );
    out
}

/// Adam moments and the step count, saved with each checkpoint so that training resumes.
pub struct Optimizer {
    pub hyper: Hyper,
    lr: Vec<f64>,
    wd: Vec<f64>,
    /// Steps taken.
    pub step: usize,
    moments: BTreeMap<String, (Tensor<1>, Tensor<1>)>,
}

/// Whether a fusion parameter is weight-decayed (`get_params_groups`).
fn regularised(name: &str, dims: usize) -> bool {
    !(name.ends_with(".bias") || dims == 1)
}

impl Optimizer {
    pub fn new(hyper: Hyper, steps_per_epoch: usize) -> Self {
        let per = steps_per_epoch.max(1);
        Optimizer {
            lr: cosine_schedule(hyper.fusion_lr, hyper.fusion_min_lr, hyper.epochs, per, hyper.warmup_epochs),
            wd: cosine_schedule(hyper.wd, hyper.wd_end, hyper.epochs, per, 0),
            hyper,
            step: 0,
            moments: BTreeMap::new(),
        }
    }

    /// The fusion learning rate and weight decay of the next step (the last ones past the end).
    pub fn rates(&self) -> (f64, f64) {
        let at = |v: &[f64]| v.get(self.step).or(v.last()).copied().unwrap_or(0.0);
        (at(&self.lr), at(&self.wd))
    }

    /// One step over `head` with gradients by parameter name (flattened).
    pub fn apply(&mut self, head: &mut FusionHead, grads: &BTreeMap<String, Tensor<1>>) -> Result<()> {
        let (lr, wd) = self.rates();
        let mut update = Update { opt: self, grads, fusion: (lr, wd), missing: Vec::new() };
        head.visit(&mut update);
        if !update.missing.is_empty() {
            return Err(Error::invalid(format!("no gradient for {}", update.missing.join(", "))));
        }
        self.step += 1;
        Ok(())
    }

    /// The moments and step as named host tensors (`m.<param>`, `v.<param>`, `step`).
    pub fn state(&self) -> Result<Vec<NamedValues>> {
        let mut out = vec![("step".to_string(), vec![1], vec![self.step as f32])];
        for (name, (m, v)) in &self.moments {
            let n = m.dims()[0];
            out.push((format!("m.{name}"), vec![n], super::host(m.clone())?));
            out.push((format!("v.{name}"), vec![n], super::host(v.clone())?));
        }
        Ok(out)
    }

    /// Restore what [`Optimizer::state`] saved, for a head whose parameters have the element
    /// counts `sizes` (by name): moments of another shape or of a parameter the head has not
    /// are refused (they come from another run).
    pub fn restore(
        &mut self,
        state: &[(String, Vec<f32>)],
        sizes: &BTreeMap<String, usize>,
        device: &burn::tensor::Device,
    ) -> Result<()> {
        for (name, values) in state {
            let param = name.strip_prefix("m.").or_else(|| name.strip_prefix("v."));
            if let Some(param) = param {
                match sizes.get(param) {
                    None => {
                        return Err(Error::invalid(format!(
                            "the optimiser state holds moments of {param}, which this head has not: it is another run's"
                        )));
                    }
                    Some(&n) if n != values.len() => {
                        return Err(Error::invalid(format!(
                            "the optimiser state's moments of {param} have {} values; this head's parameter has {n}: they are another run's",
                            values.len()
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        let mut ms = BTreeMap::new();
        for (name, values) in state {
            if name == "step" {
                self.step = values.first().copied().unwrap_or(0.0) as usize;
            } else if let Some(p) = name.strip_prefix("m.") {
                ms.entry(p.to_string()).or_insert((None, None)).0 = Some(values.clone());
            } else if let Some(p) = name.strip_prefix("v.") {
                ms.entry(p.to_string()).or_insert((None, None)).1 = Some(values.clone());
            }
        }
        for (name, (m, v)) in ms {
            if let (Some(m), Some(v)) = (m, v) {
                let t = |x: Vec<f32>| {
                    let n = x.len();
                    Tensor::<1>::from_data(TensorData::new(x, [n]), device)
                };
                self.moments.insert(name, (t(m), t(v)));
            }
        }
        Ok(())
    }
}

/// The element count of each of a head's parameters, by name (what saved moments must match).
pub fn parameter_sizes(head: &mut FusionHead) -> BTreeMap<String, usize> {
    struct Sizes(BTreeMap<String, usize>);
    impl ParamVisitor for Sizes {
        fn visit<const D: usize>(&mut self, name: &str, tensor: &mut Tensor<D>) {
            self.0.insert(name.to_string(), tensor.shape().num_elements());
        }
    }
    let mut sizes = Sizes(BTreeMap::new());
    head.visit(&mut sizes);
    sizes.0
}

struct Update<'o, 'g> {
    opt: &'o mut Optimizer,
    grads: &'g BTreeMap<String, Tensor<1>>,
    fusion: (f64, f64),
    missing: Vec<String>,
}

impl ParamVisitor for Update<'_, '_> {
    fn visit<const D: usize>(&mut self, name: &str, tensor: &mut Tensor<D>) {
        let Some(grad) = self.grads.get(name) else {
            self.missing.push(name.to_string());
            return;
        };
        let h = self.opt.hyper;
        // The decoder's Adam keeps torch's default betas (the repository sets only its rate).
        let (lr, wd, beta1) = if name.starts_with("fusion.") {
            (self.fusion.0, if regularised(name, D) { self.fusion.1 } else { 0.0 }, h.beta1)
        } else {
            (h.decoder_lr, 0.0, 0.9)
        };
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let param = tensor.clone().without_autodiff().reshape([n]);
        let (m, v) = self.opt.moments.remove(name).unwrap_or_else(|| (param.zeros_like(), param.zeros_like()));
        let t = (self.opt.step + 1) as i32;
        // torch.optim.AdamW (single-tensor path): decay, moments, bias corrections.
        let param = if wd != 0.0 { param.mul_scalar(1.0 - lr * wd) } else { param };
        let m = m.mul_scalar(beta1).add(grad.clone().mul_scalar(1.0 - beta1));
        let v = v.mul_scalar(h.beta2).add(grad.clone().powf_scalar(2.0).mul_scalar(1.0 - h.beta2));
        let c1 = 1.0 - beta1.powi(t);
        let c2 = (1.0 - h.beta2.powi(t)).sqrt();
        let denom = v.clone().sqrt().div_scalar(c2).add_scalar(h.eps);
        let param = param.sub(m.clone().div(denom).mul_scalar(lr / c1));
        self.opt.moments.insert(name.to_string(), (m, v));
        *tensor = param.reshape(dims);
    }
}

/// Parameters made leaves that record gradients.
pub(crate) struct Track;

impl ParamVisitor for Track {
    fn visit<const D: usize>(&mut self, _: &str, tensor: &mut Tensor<D>) {
        *tensor = tensor.clone().without_autodiff().autodiff().require_grad();
    }
}

/// Parameters back to plain tensors.
pub(crate) struct Untrack;

impl ParamVisitor for Untrack {
    fn visit<const D: usize>(&mut self, _: &str, tensor: &mut Tensor<D>) {
        *tensor = tensor.clone().without_autodiff();
    }
}

/// Each parameter's gradient from `grads`, flattened, added into `sums`.
pub(crate) struct Collect<'g> {
    pub grads: &'g burn::tensor::Gradients,
    pub sums: &'g mut BTreeMap<String, Tensor<1>>,
}

impl ParamVisitor for Collect<'_> {
    fn visit<const D: usize>(&mut self, name: &str, tensor: &mut Tensor<D>) {
        let n: usize = tensor.dims().iter().product();
        let grad = match tensor.grad(self.grads) {
            Some(g) => g.reshape([n]),
            None => Tensor::zeros([n], &tensor.device()),
        };
        let sum = match self.sums.remove(name) {
            Some(s) => s.add(grad),
            None => grad,
        };
        self.sums.insert(name.to_string(), sum);
    }
}

/// Every parameter as a named host tensor, in checkpoint order.
pub struct Weights(pub Vec<(String, Vec<usize>, Vec<f32>)>, pub Option<Error>);

impl ParamVisitor for Weights {
    fn visit<const D: usize>(&mut self, name: &str, tensor: &mut Tensor<D>) {
        match super::host(tensor.clone().without_autodiff()) {
            Ok(values) => self.0.push((name.to_string(), tensor.dims().to_vec(), values)),
            Err(e) => self.1 = Some(e),
        }
    }
}

/// `BCEWithLogitsLoss(reduction='none')` averaged over each task's pixels where `valid` is 1
/// (`loss_with_ignored_area`; over all its pixels when none is valid, as there), summed over
/// the tasks. `[b, 1, h, w]` each -> scalar
pub fn task_losses(logits: Tensor<4>, target: Tensor<4>, valid: Tensor<4>) -> Tensor<1> {
    let [b, c, h, w] = logits.dims();
    let n = c * h * w;
    // max(x, 0) - x y + log(1 + exp(-|x|)), stable for any x.
    let bce = logits
        .clone()
        .clamp_min(0.0)
        .sub(logits.clone().mul(target))
        .add(logits.abs().neg().exp().add_scalar(1.0).log());
    let all = bce.clone().reshape([b, n]).mean_dim(1);
    let per = bce.mul(valid.clone()).reshape([b, n]).sum_dim(1);
    let count = valid.reshape([b, n]).sum_dim(1);
    let none = count.clone().equal_elem(0.0);
    per.div(count.clamp_min(1.0)).mask_where(none, all).sum()
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;

    #[test]
    fn moments_of_another_head_are_refused() {
        let device = burn::tensor::Device::flex();
        let sizes: BTreeMap<String, usize> = [("fusion.w".to_string(), 4)].into_iter().collect();
        let mut optimizer = Optimizer::new(Hyper::default(), 1);
        let saved = |n: usize| vec![("m.fusion.w".to_string(), vec![0.0; n]), ("v.fusion.w".to_string(), vec![0.0; n])];
        optimizer.restore(&saved(4), &sizes, &device).unwrap();
        let err = optimizer.restore(&saved(6), &sizes, &device).unwrap_err().to_string();
        assert!(err.contains("have 6 values; this head's parameter has 4"), "{err}");
        let other = vec![("m.decoder.x".to_string(), vec![0.0; 4])];
        let err = optimizer.restore(&other, &sizes, &device).unwrap_err().to_string();
        assert!(err.contains("moments of decoder.x, which this head has not"), "{err}");
        let rates = Hyper { fusion_lr: -1.0, ..Hyper::default() };
        assert!(rates.validate().unwrap_err().to_string().contains("--fusion-lr must be 0 or more, got -1"));
    }
}
