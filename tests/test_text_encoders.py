import pytest
import torch

from fineimagen.config import TextEncoderConfig
from fineimagen.errors import InputError
from fineimagen.models.text_encoders import (
    EmbeddingCache,
    HashTokenizer,
    build_text_encoder,
    conjunct_spans,
    minilm_path,
)

PROMPTS = ["a red circle at the top left", "two blue stars", "x"]


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder(TextEncoderConfig(kind="minilm", max_length=16))


def test_minilm_gives_per_token_states_and_mask(minilm):
    embeds, mask = minilm.encode(PROMPTS)
    assert embeds.shape[0] == 3 and embeds.shape[2] == 384 and mask.shape == embeds.shape[:2]
    lengths = mask.sum(1)
    assert lengths[0] > lengths[1] > lengths[2] >= 3  # [CLS] x [SEP]
    assert embeds[2, lengths[2]:].abs().sum() == 0  # padding zeroed
    assert minilm.frozen and not any(p.requires_grad for p in minilm.parameters())
    # different words, different states; the same prompt, the same states
    again, _ = minilm.encode(PROMPTS[:1])
    assert torch.allclose(again[0, : lengths[0]], embeds[0, : lengths[0]], atol=1e-2)


def test_feature_layers_concatenate_hidden_states(minilm):
    both = build_text_encoder(TextEncoderConfig(kind="minilm", max_length=16,
                                                feature_layers=(0, -1)))
    assert both.dim == 768
    embeds, mask = both.encode(PROMPTS[:2])
    last, _ = minilm.encode(PROMPTS[:2])
    assert torch.equal(embeds[..., 384:], last)  # the default is the last layer alone
    n = int(mask[0].sum())
    # layer 0 (the input embeddings) is a different feature from the last layer
    assert not torch.allclose(embeds[0, :n, :384], embeds[0, :n, 384:], atol=0.1)
    with pytest.raises(InputError, match="feature_layers \\[7\\]: each must index one of the 7"):
        build_text_encoder(TextEncoderConfig(kind="minilm", feature_layers=(7,)))


def test_cache_encodes_each_prompt_once_and_matches(minilm):
    cache = EmbeddingCache(minilm)
    first, mask1 = cache.encode(PROMPTS)
    second, mask2 = cache.encode(list(reversed(PROMPTS)))
    assert cache.misses == 3 and cache.hits == 3
    assert torch.equal(mask2[0, : mask1[2].sum()], mask1[2, : mask1[2].sum()])
    direct, mask = minilm.encode(PROMPTS)
    n = int(mask[0].sum())
    assert torch.allclose(first[0, :n], direct[0, :n], atol=1e-2)


def test_tiny_t5_loads_through_the_same_path(tmp_path):
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    config = T5Config(vocab_size=30522, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                      num_heads=2, decoder_start_token_id=0)
    T5EncoderModel(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path)
    encoder = build_text_encoder(TextEncoderConfig(kind="t5", path=str(tmp_path)))
    embeds, mask = encoder.encode(PROMPTS)
    assert encoder.dim == 16 and embeds.shape[-1] == 16 and mask.shape == embeds.shape[:2]
    assert torch.isfinite(embeds).all()


def test_t5_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="cannot load T5"):
        build_text_encoder(TextEncoderConfig(kind="t5", path=str(tmp_path / "none")))
    with pytest.raises(InputError, match="needs a path"):
        build_text_encoder(TextEncoderConfig(kind="t5"))
    with pytest.raises(InputError, match="unknown text encoder"):
        build_text_encoder(TextEncoderConfig(kind="bert"))


def test_trainable_encoder_learns_and_hashes_deterministically():
    cfg = TextEncoderConfig(kind="trainable", dim=32, layers=1, heads=2, vocab_size=257,
                            max_length=8)
    encoder = build_text_encoder(cfg)
    ids, mask = HashTokenizer(257, 8)(["A red, circle", "a red circle"])
    assert ids[0, 0] == ids[1, 0] and mask[0].sum() == 4 and mask[1].sum() == 3
    assert ids.shape == (2, 4)  # padded to the longest prompt, not to max_length
    long_ids, _ = HashTokenizer(257, 8)(["a " * 20])
    assert long_ids.shape == (1, 8)
    embeds, _ = encoder.encode(PROMPTS)
    embeds.sum().backward()
    assert encoder.tokens.weight.grad.abs().sum() > 0 and not encoder.frozen


def test_conjunct_spans_split_at_commas_conjunctions_relations_and_background():
    def pieces(prompt):
        return [prompt[s:e] for s, e in conjunct_spans(prompt)]

    assert pieces("two red circles at the top left, a star on the left and 3 pink hearts "
                  "on a white background") == [
        "two red circles at the top left", "a star on the left", "3 pink hearts",
        "a white background"]
    assert pieces("a red circle to the left of a blue square against gray") == [
        "a red circle", "a blue square", "gray"]
    assert pieces("a circle with stripes on the right") == ["a circle with stripes on the right"]


@pytest.fixture(scope="module")
def bound():
    return build_text_encoder(TextEncoderConfig(kind="minilm", max_length=16,
                                                feature_layers=(0, -1), binding="conjuncts"))


def test_conjunct_binding_gives_each_noun_its_own_conjuncts_states(bound):
    whole = build_text_encoder(TextEncoderConfig(kind="minilm", max_length=16,
                                                 feature_layers=(0, -1)))
    prompt, swapped = "a red circle and a blue square", "a blue circle and a red square"
    circle, square = 3, 7  # [CLS] a red circle and a blue square [SEP]
    embeds, _ = bound.encode([prompt, swapped])
    plain, _ = whole.encode([prompt, swapped])
    alone, _ = whole.encode(["a red circle", "a blue square"])
    # the last layer of "circle" and "square" is that of its conjunct encoded alone ...
    assert torch.allclose(embeds[0, circle, 384:], alone[0, 3, 384:], atol=1e-5)
    assert torch.allclose(embeds[0, square, 384:], alone[1, 3, 384:], atol=1e-5)
    # ... the input embeddings, [CLS], [SEP] and "and" stay the whole prompt's
    assert torch.equal(embeds[0, :, :384], plain[0, :, :384])
    for j in (0, 4, 8):
        assert torch.equal(embeds[0, j], plain[0, j])
    # so swapping the colours moves the noun much further than in the whole prompt's states
    cos = torch.nn.functional.cosine_similarity
    assert cos(embeds[0, circle, 384:], embeds[1, circle, 384:], 0) < 0.95
    assert cos(plain[0, circle, 384:], plain[1, circle, 384:], 0) > 0.99
    # one conjunct: exactly the usual encoding
    single, _ = bound.encode(["a large blue star in the center"])
    assert torch.equal(single, whole.encode(["a large blue star in the center"])[0])


def test_without_special_tokens_only_the_words_are_read(minilm):
    words = build_text_encoder(TextEncoderConfig(kind="minilm", max_length=16,
                                                 special_tokens=False))
    prompts = ["two blue stars", "x"]
    embeds, mask = words.encode(prompts)
    full, full_mask = minilm.encode(prompts)
    # [CLS] two blue stars [SEP] / [CLS] x [SEP] [PAD] [PAD]
    assert mask.tolist() == [[False, True, True, True, False],
                             [False, True, False, False, False]]
    assert torch.equal(embeds, full * mask[..., None])
    assert embeds[:, 0].abs().sum() == 0 and full_mask[:, 0].all()
    cached, cached_mask = EmbeddingCache(words).encode(prompts)  # a mask that is no prefix
    assert torch.equal(cached_mask, mask[:, :4])  # the cache drops [SEP], masked anyway
    assert torch.allclose(cached, embeds[:, :4], atol=1e-2)


def test_binding_must_be_known_and_frozen():
    with pytest.raises(InputError, match="unknown text binding 'nouns'"):
        build_text_encoder(TextEncoderConfig(kind="minilm", binding="nouns"))
    with pytest.raises(InputError, match="apply to a frozen encoder"):
        build_text_encoder(TextEncoderConfig(kind="trainable", binding="conjuncts"))
    with pytest.raises(InputError, match="apply to a frozen encoder"):
        build_text_encoder(TextEncoderConfig(kind="trainable", special_tokens=False))


FILLER = "the light was soft and the room was quiet. " * 40  # ~ 360 words


# how far one prompt's states may move with the shape of the batch it is encoded in: fp32
# kernels agree to ~1e-6; under bf16 autocast (the default where a CPU computes bf16
# natively) every matmul rounds its inputs to 8 significant bits, so a batch padded to
# another length or blocked otherwise gives states ~1e-2 apart (measured 8.6e-3 on an
# AVX-512 BF16 AMD EPYC): the bound is bf16's, not a change of meaning
BATCH_SHAPE_ATOL = {False: 1e-4, True: 3e-2}


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("binding, special", [("prompt", True), ("conjuncts", False)])
def test_long_prompts_are_read_in_chunks_to_the_last_word(binding, special, bf16):
    enc = build_text_encoder(TextEncoderConfig(kind="minilm", max_length=16, binding=binding,
                                               special_tokens=special))
    enc.bf16 = bf16
    atol = BATCH_SHAPE_ATOL[bf16]
    prompt = FILLER + "and a blue star"
    chunks = enc.chunk_spans(prompt)
    assert len(chunks) > 20 and chunks[-1][1] == len(prompt)
    assert all(enc._count(prompt[s:e]) <= 14 for s, e in chunks)  # 16 less [CLS], [SEP]
    embeds, mask = enc.encode([prompt, "a red circle"])
    spans = enc.token_spans([prompt, "a red circle"])
    assert len(spans[0]) == embeds.shape[1] == len(enc.token_ids(prompt))
    words = [prompt[a:b] for (a, b), m in zip(spans[0], mask[0], strict=True) if m and b > a]
    assert words[-3:] == ["a", "blue", "star"]  # the end of the prompt is read
    assert mask[0].sum() > 300 and (embeds[0, mask[0]].abs().sum(-1) > 0).all()
    assert not mask[1, len(enc.token_ids("a red circle")):].any()
    # the short prompt beside a long one encodes as it does alone
    alone, alone_mask = enc.encode(["a red circle"])
    n = alone_mask.shape[1]
    assert torch.equal(mask[1, :n], alone_mask[0])
    assert torch.allclose(embeds[1, :n], alone[0], atol=atol)
    # the star's tokens carry the states of their own chunk, read alone
    last = prompt[chunks[-1][0]:]
    tail, tail_mask = enc.encode([last])
    k = int(tail_mask[0].sum())
    assert torch.allclose(embeds[0, mask[0]][-k:], tail[0, tail_mask[0]], atol=atol)


def test_a_piece_longer_than_a_chunk_is_cut_into_overlapping_windows(minilm):
    prompt = " ".join(f"word{i}" for i in range(60))  # no border to cut at
    chunks = minilm.chunk_spans(prompt)
    assert len(chunks) > 3 and chunks[0][0] == 0 and chunks[-1][1] == len(prompt)
    assert all(b[0] < a[1] for a, b in zip(chunks, chunks[1:], strict=False))  # overlap


def test_a_frozen_encoder_loads_straight_into_a_half_dtype(tmp_path):
    """`dtype` reads the weights into bfloat16 as they load (no float32 copy first): the same
    weights as a float32 load rounded, and states (returned as float32) close to the float32
    encoder's."""
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    config = T5Config(vocab_size=30522, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                      num_heads=2, decoder_start_token_id=0)
    T5EncoderModel(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path)
    cfg = TextEncoderConfig(kind="t5", path=str(tmp_path))
    full, half = build_text_encoder(cfg), build_text_encoder(cfg, torch.bfloat16)
    weights = dict(full.named_parameters())
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    for name, p in half.named_parameters():
        assert torch.equal(p, weights[name].to(torch.bfloat16)), name
    (a, mask), (b, _) = full.encode(PROMPTS), half.encode(PROMPTS)
    assert b.dtype == torch.float32 and not torch.equal(a, b)
    assert (a - b)[mask].abs().max() < 0.1 * a[mask].abs().max()
    minilm = build_text_encoder(TextEncoderConfig(kind="minilm"), torch.bfloat16)
    assert {p.dtype for p in minilm.parameters()} == {torch.bfloat16}
