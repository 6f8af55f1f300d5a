"""The MoCo v3 fixture (tests/fixtures/moco-v3-tiny): a training checkpoint as the authors'
`main_moco.py` saves it (`{'epoch', 'arch', 'state_dict', 'optimizer', 'scaler'}`, the model
wrapped in DistributedDataParallel, so every key starts with `module.`), built from the
authors' own `vits.py` and `moco/builder.py` (facebookresearch/moco-v3 @ c349e6e) with random
weights at a tiny size, and the base encoder's `forward_features` on two random images.

    /root/.venv-ovsam/bin/python tools/moco_reference.py --repo MOCO_V3_CHECKOUT

Two shims let the 2021 code run on timm 1.0 unchanged: `timm.models.layers.helpers` (moved)
and `VisionTransformer.num_tokens` (renamed `num_prefix_tokens`). Versions: torch 2.15.0,
timm 1.0.31 (tools/requirements.txt); seed 0.
"""

import argparse
import pathlib
import sys
import types
from functools import partial

import torch
import torch.nn as nn
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "moco-v3-tiny"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True, help="a checkout of facebookresearch/moco-v3")
    args = parser.parse_args()
    import timm.layers
    import timm.models.vision_transformer as tv

    sys.modules["timm.models.layers.helpers"] = types.SimpleNamespace(to_2tuple=timm.layers.to_2tuple)
    tv.VisionTransformer.num_tokens = property(lambda self: self.num_prefix_tokens)
    sys.path.insert(0, args.repo)
    import vits
    from moco.builder import MoCo_ViT

    torch.manual_seed(0)
    encoder = partial(
        vits.VisionTransformerMoCo, img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2,
        qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
    )
    model = MoCo_ViT(encoder, dim=8, mlp_dim=16, T=0.2)
    # The authors' init leaves biases at 0 and layer norms at 1, 0: spread them so each matters.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "pos_embed" not in name:
                p.add_(torch.randn_like(p) * 0.2)
    model.eval()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss = model.base_encoder(torch.randn(2, 3, 64, 64)).square().mean()
    loss.backward()
    optimizer.step()
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"epoch": 300, "arch": "vit_tiny", "state_dict": wrapped, "optimizer": optimizer.state_dict(),
         "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0}},
        OUT / "checkpoint.pth.tar",
    )
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        hidden = model.base_encoder.forward_features(pixels)
    save_file({"pixels": pixels.contiguous(), "last_hidden_state": hidden.contiguous()}, OUT / "reference.safetensors")
    print(f"{len(wrapped)} model tensors, features {tuple(hidden.shape)} -> {OUT}")


if __name__ == "__main__":
    main()
