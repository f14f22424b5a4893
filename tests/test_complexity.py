import timm

from pytest_e3p.models.complexity import count_gmacs, count_params_m, measure_complexity


def test_macs_of_a_vit_with_attention_match_a_manual_count():
    dim, depth, patch, img, classes = 64, 2, 16, 64, 10
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=img, embed_dim=dim, depth=depth, num_heads=2, num_classes=classes).eval()
    tokens = (img // patch) ** 2 + 1  # patches + class token
    patch_embed = (img // patch) ** 2 * (3 * patch * patch) * dim
    per_block = (
        tokens * dim * 3 * dim  # qkv projection
        + tokens * tokens * dim  # q @ k^T (all heads)
        + tokens * tokens * dim  # attn @ v
        + tokens * dim * dim  # output projection
        + 2 * tokens * dim * 4 * dim  # MLP, ratio 4
    )
    head = dim * classes
    manual = patch_embed + depth * per_block + head
    assert count_gmacs(model, (3, img, img)) * 1e9 == manual


def test_vit_tiny_counts_attention_under_the_math_backend():
    # the reference figures: 1.254 GMACs with attention counted, 1.075 without (docs/method/metrics.md)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    cx = measure_complexity(model)
    assert round(cx.gmacs, 3) == 1.254
    assert cx.input_size == (3, 224, 224)
    assert round(count_params_m(model), 2) == 5.72
