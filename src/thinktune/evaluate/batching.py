"""Continuous batching: rows leave the batch at their end token and waiting prompts take their
slots, so generation costs the tokens actually generated (issue 14).

Why by hand, on transformers' cache layer: transformers 5.24's own `generate_batch` (paged
continuous batching) ran at 59 generated tokens/s where static batches of 8 ran at 115 on the
same CPU (issue 14's measurement), and `generate` keeps a finished row in the batch until the
longest one ends. Here each layer's keys and values live in one preallocated tensor of
`slots x heads x capacity x head_dim`. Every decode step writes one column for all slots; a row
that joins puts its prompt's keys and values in the columns just before the current one, and a
padding mask hides each slot's columns from before its row began. Keys are stored after their
rotary embedding, so a row's positions are its own (prompt length + tokens so far), whatever the
column. Columns no live row uses any more are cut off the left when room runs out.

Models with sliding-window, linear or other non-plain attention layers are not run here (the
caller falls back to static batches): a slot would see columns its window must not.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .budget import ThinkBudget
from .loop import looping


def fit_slots(model, want: int, columns: int) -> int:
    """How many rows' caches fit in 70% of the memory free now (at least 1): a row holds
    `columns` columns of keys and values in every layer. GPU: free device memory; CPU: MemAvailable."""
    config = model.config.get_text_config(decoder=True)
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    dtype = next(model.parameters()).dtype
    per_row = config.num_hidden_layers * 2 * heads * dim * columns * torch.finfo(dtype).bits // 8
    free = torch.cuda.mem_get_info()[0] if next(model.parameters()).is_cuda else _available_ram()
    return max(1, min(want, int(0.7 * free) // max(per_row, 1)))


def _available_ram() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown (not Linux): trust the batch size asked for


class SlotLayer(DynamicLayer):
    """One attention layer's cache for all slots: writes at the shared column `length`, returns
    the columns written so far (a view: nothing is copied per step)."""

    keys: torch.Tensor
    values: torch.Tensor

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self.keys, self.values, self.length = keys, values, length
        self.device, self.is_initialized = keys.device, True

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        self.keys[:, :, self.length : end] = key_states
        self.values[:, :, self.length : end] = value_states
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_seq_length(self) -> int:
        return self.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0


def supported(model) -> bool:
    """Plain full attention in every layer (see the module docstring)."""
    config = model.config.get_text_config(decoder=True)
    kinds = getattr(config, "layer_types", None) or ["full_attention"]
    window = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    return all(k == "full_attention" for k in kinds) and not window


# transformers' SDPA path copies every key/value head once per query head it serves (repeat_kv)
# whenever a padding mask is passed, because CUDA kernels would fall back to slow math with a mask
# and grouped heads. On CPU, PyTorch's grouped SDPA takes the mask at full speed: measured on a
# 2-core AVX2 CPU, 32 rows x 500 columns, 9 query / 3 key heads: 46.8 ms a layer with the copies,
# 4.3 ms without, the same output to the bit. transformers reads this switch on every call.
GQA_SWITCH = "TRANSFORMERS_SDPA_FORCE_GQA"


@contextmanager
def grouped_attention(device: str):
    """Grouped-query SDPA without the head copies, on CPU, for the duration of a run."""
    before = os.environ.get(GQA_SWITCH)
    if device == "cpu":
        os.environ[GQA_SWITCH] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(GQA_SWITCH, None)
        else:
            os.environ[GQA_SWITCH] = before


# On a CPU without native bf16, generation runs in fp32 and a decode step is mostly matrix products
# of a few rows against every weight. oneDNN with the weight reordered once into its blocked layout
# runs those at about twice the speed of the MKL call `nn.Linear` makes (measured on a 2-core AVX2
# CPU, 32 rows: 1536x576 weight 0.46 ms against 1.09, the 49152x576 output layer 20.9 ms against
# 51.9); it is what `torch.compile`'s freezing pass does to linear layers, without the compile.
# Results agree to fp32 rounding, not to the bit. The packed copies live for the run only, and only
# when they take at most a quarter of the free memory (fit_slots gives the cache 70% of it).
def _can_pack(model) -> bool:
    from ..model import pick_precision

    first = next(model.parameters())
    weights = sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, torch.nn.Linear))
    return (
        first.device.type == "cpu"
        and first.dtype == torch.float32
        and pick_precision("auto", "cpu") == "fp32"  # bf16 autocast would no longer apply to the packed layers
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and weights <= _available_ram() // 4
    )


@contextmanager
def packed_linears(model, rows: int):
    """For the duration of a run, every fp32 linear layer on a CPU computes from a copy of its
    weight packed for oneDNN (`rows`: the usual number of rows, a layout hint). Elsewhere a no-op."""
    if not _can_pack(model):
        yield
        return
    patched = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight.dtype == torch.float32:
            packed = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), rows)
            bias = None if module.bias is None else module.bias.detach()
            module.forward = _packed_forward(packed, bias)  # type: ignore[method-assign]  # an instance attribute: deleted below, the class's forward returns
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def _packed_forward(packed: torch.Tensor, bias: torch.Tensor | None):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")

    return forward


@dataclass
class Row:
    """One prompt in flight: its index in the job, prompt, generated ids and budget."""

    index: int
    prompt: list[int]
    out: list[int] = field(default_factory=list)
    budget: ThinkBudget | None = None
    start: int = 0  # first cache column of this row
    stop: str | None = None


class Slots:
    """The live rows and their cache: one slot per row, `mask` marks the columns each slot uses,
    `seen` the tokens each row has (for the repetition penalty)."""

    def __init__(self, slots: int, width: int, max_new: int, vocab: int, device):
        self.slots, self.width = slots, width  # width: no prompt is longer (admission needs that room)
        # A live row spans at most width + max_new columns; the slack past that makes every cut of
        # dead columns free at least `slack` of them, so the cache is copied once per `slack` steps.
        slack = max(64, (width + max_new) // 4)
        self.limit = width + max_new + slack
        self.capacity = capacity = min(width + 512, self.limit)
        self.rows: list[Row] = []
        self.layers: list[SlotLayer] = []
        self.cache: Cache | None = None
        self.mask = torch.zeros(slots, capacity, dtype=torch.long, device=device)
        self.seen = torch.zeros(slots, vocab, dtype=torch.bool, device=device)

    @property
    def length(self) -> int:
        return self.layers[0].length if self.layers else self.width

    def put(self, slot: int, row: Row, prompt_cache: Cache) -> None:
        """Put a prefilled row in a slot (a new one at the end, or a finished row's): its prompt's
        keys and values end at the current column; the slot's older columns are masked."""
        if self.cache is None:  # allocated once, for every slot, when the first prompt shows the shapes
            self.layers = [self._empty(cast(DynamicLayer, layer)) for layer in prompt_cache.layers]
            self.cache = Cache(layers=list(self.layers))
        if slot == len(self.rows):
            self.rows.append(row)
        self.rows[slot] = row
        end = self.length
        row.start = end - len(row.prompt)
        for mine, theirs in zip(self.layers, prompt_cache.layers):
            keys, values = cast(SlotLayer, theirs).keys, cast(SlotLayer, theirs).values  # a DynamicLayer, filled by the prefill
            mine.keys[slot, :, row.start : end] = keys[0]
            mine.values[slot, :, row.start : end] = values[0]
        self.mask[slot] = 0
        self.mask[slot, row.start : end] = 1
        self.seen[slot] = False
        self.seen[slot, torch.tensor(row.prompt + row.out, device=self.seen.device)] = True

    def _empty(self, layer: DynamicLayer) -> SlotLayer:
        keys, values = cast(SlotLayer, layer).keys, cast(SlotLayer, layer).values  # a DynamicLayer, filled by the prefill
        _, heads, _, dim = keys.shape
        shape = (self.slots, heads, self.capacity, dim)
        return SlotLayer(keys.new_zeros(shape), values.new_zeros(shape), self.width)

    def drop(self, done: list[int]) -> None:
        """Remove the slots of finished rows when no prompt waits to take them (a copy of the cache).
        Slots not yet filled (fewer rows than slots) go too."""
        keep = [i for i in range(len(self.rows)) if i not in done]
        if len(keep) == self.slots:
            return
        self.slots = len(keep)
        self.rows = [self.rows[i] for i in keep]
        index = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        self.mask, self.seen = self.mask.index_select(0, index), self.seen.index_select(0, index)
        for layer in self.layers:
            layer.keys, layer.values = layer.keys.index_select(0, index), layer.values.index_select(0, index)

    def make_room(self) -> None:
        """Before a step at the last column: cut the columns no live row uses (keeping the room a
        prompt needs), and double the capacity (up to `limit`) if that frees less than a quarter."""
        if self.cache is None or self.length < self.capacity:
            return
        length = self.length
        cut = min([r.start for r in self.rows] + [length - self.width])
        size = min(2 * self.capacity, self.limit) if cut < self.capacity // 4 else self.capacity
        for layer in self.layers:
            for name in ("keys", "values"):
                old = getattr(layer, name)
                new = old.new_zeros((*old.shape[:2], size, old.shape[3]))
                new[:, :, : length - cut] = old[:, :, cut:length]
                setattr(layer, name, new)
            layer.length = length - cut
        mask = self.mask.new_zeros(self.mask.shape[0], size)
        mask[:, : length - cut] = self.mask[:, cut:length]
        self.mask, self.capacity = mask, size
        for r in self.rows:
            r.start -= cut


class Engine:
    """Runs rows through a model with continuous batching: `run(rows, done)` calls `done(row)` as
    each row ends (its `stop` one of decoding.STOPS) and `on_token(row, token)`, if
    given, for every token (chat streams with it). Greedy or sampled as `dec` says; sampling uses
    transformers' own temperature and top-p warpers, on this engine's own seeded generator."""

    def __init__(self, model, tokenizer, dec, on_token=None):
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        self.model, self.dec, self.on_token = model, dec, on_token
        self.eos = tokenizer.eos_token_id
        self.device = next(model.parameters()).device
        self.warp = LogitsProcessorList([TemperatureLogitsWarper(dec.temperature), TopPLogitsWarper(dec.top_p)]) if dec.temperature > 0 else None
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(dec.seed if dec.seed is not None else torch.seed())

    @torch.no_grad()
    def run(self, rows: list[Row], done) -> None:
        from ..model import inference_autocast

        waiting = list(reversed(rows))  # popped from the end: input order
        width = max(len(r.prompt) for r in rows)
        vocab = self.model.get_output_embeddings().weight.shape[0]
        slots = Slots(min(self.dec.batch_size, len(rows)), width, self.dec.max_new_tokens, vocab, self.device)
        with inference_autocast(self.device.type), grouped_attention(self.device.type), packed_linears(self.model, slots.slots):
            while waiting or slots.rows:
                while waiting and len(slots.rows) < slots.slots:
                    self._join(slots, len(slots.rows), waiting.pop(), done)
                slots.drop([])  # slots no row took (rows that ended on their first token)
                if slots.rows:
                    self._step(slots, waiting, done)

    def _join(self, slots: Slots, slot: int, row: Row, done) -> None:
        """Prefill a row alone (no padding) and give it `slot`; a row that ends on its first token
        leaves at once and the next waiting row gets the slot from the caller."""
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache(config=self.model.config)
        ids = torch.tensor([row.prompt], device=self.device)
        logits = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        seen = torch.zeros(1, logits.shape[-1], dtype=torch.bool, device=self.device)
        seen[0, ids[0]] = True
        self._take(row, int(self._pick(logits, seen)[0]))
        if row.stop:
            done(row)
        else:
            slots.put(slot, row, cache)

    def _step(self, slots: Slots, waiting: list[Row], done) -> None:
        """One decode step for every slot; ended rows hand their slot to waiting rows or leave."""
        slots.make_room()
        length = slots.length
        slots.mask[:, length] = 1
        ids = torch.tensor([[r.out[-1]] for r in slots.rows], device=self.device)
        positions = torch.tensor([[len(r.prompt) + len(r.out) - 1] for r in slots.rows], device=self.device)
        out = self.model(input_ids=ids, attention_mask=slots.mask[:, : length + 1], position_ids=positions, cache=slots.cache, use_cache=True)
        picked = self._pick(out.logits[:, -1], slots.seen).tolist()
        ended = []
        for slot, (row, token) in enumerate(zip(slots.rows, picked)):
            self._take(row, token)
            slots.seen[slot, row.out[-1]] = True
            if row.stop:
                done(row)
                ended.append(slot)
        for slot in ended:
            while waiting and slots.rows[slot].stop:
                self._join(slots, slot, waiting.pop(), done)
        slots.drop([s for s in ended if slots.rows[s].stop])

    def _pick(self, logits: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """The next token of each row: repetition penalty on the row's own tokens (prompt and
        output, as transformers applies it), then greedy, or temperature + top-p sampling."""
        scores = logits.float()
        p = self.dec.repetition_penalty
        if p != 1.0:
            scores = torch.where(seen, torch.where(scores < 0, scores * p, scores / p), scores)
        if self.warp is None:
            return scores.argmax(-1)
        scores = self.warp(cast(torch.LongTensor, None), scores)  # these warpers read only the scores
        return torch.multinomial(scores.softmax(-1), 1, generator=self.generator)[:, 0]

    def _take(self, row: Row, token: int) -> None:
        """Append the model's token to a row (or the budget's forced one instead) and see if the row ends."""
        if row.budget is not None:
            token = row.budget.choose(token)
        if token == self.eos:
            row.stop = "eos"
            return
        row.out.append(token)
        if self.on_token is not None:
            self.on_token(row, token)
        if len(row.out) >= self.dec.max_new_tokens:
            row.stop = "max_new_tokens"
        elif self.dec.stop_loops and looping(row.out):
            row.stop = "loop"
