//! ResCLIP (placeholder while it is written).

/// ResCLIP's settings (its configs' values).
#[derive(Debug, Clone, PartialEq)]
pub struct ResClip {
    /// Pixels of the first segmentation whose top probability is under this count as name 0
    /// (`temp_thd`).
    pub temp_threshold: f32,
    /// `(τ, λ)` of the residual cross-correlation attention (`attn_rcs_weights`).
    pub rcs_weights: [f32; 2],
    /// `(τ, λ)` of the semantic feedback (`attn_sfr_weights`).
    pub sfr_weights: [f32; 2],
    /// Patches of one class that no straight path of that class joins are decayed
    /// (`delete_same_entity`).
    pub delete_same_entity: bool,
}

impl Default for ResClip {
    fn default() -> Self {
        ResClip { temp_threshold: 0.25, rcs_weights: [2.0, 0.3], sfr_weights: [2.1, 0.7], delete_same_entity: true }
    }
}
