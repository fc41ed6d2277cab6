"""The Hierarchical Attention Network: words -> segment vectors -> document vector -> class.

Padding never changes a result: every recurrence reads each sequence's real steps first,
so outputs at real positions are those of the unpadded sequence, and attention masks the
padded ones. This holds without packed sequences, which are about 2x slower on CPU
(shared/notes/performance-facts.md).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from han.batching import EncodedSplit
from han.config import HANConfig


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first `length` steps and leave its padding where it is.

    Its own inverse. (N, T, D) -> (N, T, D)
    """
    steps = torch.arange(x.size(1), device=x.device)
    flipped = lengths.unsqueeze(1) - 1 - steps  # (N, T)
    index = torch.where(flipped >= 0, flipped, steps)
    return x.gather(1, index.unsqueeze(2).expand_as(x))


class BiRNN(nn.Module):
    """A multi-layer bidirectional LSTM/GRU that is exact under right padding.

    Each direction is its own unidirectional RNN; the backward one reads every sequence
    reversed within its own length, so it too meets real steps before padding.
    """

    def __init__(self, *, input_size: int, hidden: int, layers: int, cell: str,
                 dropout: float) -> None:
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        sizes = [input_size] + [2 * hidden] * (layers - 1)
        self.forward_rnns = nn.ModuleList(rnn(size, hidden, batch_first=True) for size in sizes)
        self.backward_rnns = nn.ModuleList(rnn(size, hidden, batch_first=True) for size in sizes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for layer, (forward_rnn, backward_rnn) in enumerate(
            zip(self.forward_rnns, self.backward_rnns, strict=True)
        ):
            if layer:
                x = self.dropout(x)
            ahead, _ = forward_rnn(x)  # (N, T, D) -> (N, T, H)
            behind, _ = backward_rnn(reverse_within_length(x, lengths))
            x = torch.cat([ahead, reverse_within_length(behind, lengths)], dim=2)  # (N, T, 2H)
        return x


class AttentionPool(nn.Module):
    """Additive attention (Yang et al., 2016): a learned query scores each position."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.project = nn.Linear(size, size)
        self.query = nn.Linear(size, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.query(torch.tanh(self.project(x))).squeeze(2).float()  # (N, T, D) -> (N, T)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        # A fully padded row gets all-zero weights instead of NaN from softmax over nothing.
        weights = torch.softmax(scores, dim=1) * mask
        return torch.bmm(weights.unsqueeze(1).to(x.dtype), x).squeeze(1)  # (N, T, D) -> (N, D)


def _mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    return torch.arange(width, device=lengths.device) < lengths.unsqueeze(1)


class WordEncoder(nn.Module):
    """Token ids of each segment -> one vector per segment."""

    def __init__(self, config: HANConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=0)
        # Frozen word2vec vectors are added to the trainable ones, which then start at zero:
        # training begins from word2vec and learns corrections (the reference's scheme).
        self.pretrained = (
            nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=0)
            if config.pretrained_embeddings else None
        )
        if self.pretrained is not None:
            self.pretrained.weight.requires_grad_(False)
            nn.init.zeros_(self.embed.weight)
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = BiRNN(input_size=config.embed_dim, hidden=config.word_hidden,
                         layers=config.word_layers, cell=config.cell, dropout=config.dropout)
        self.pool = AttentionPool(2 * config.word_hidden)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # (M, W) -> (M, W, E)
        if self.pretrained is not None:
            x = x + self.pretrained(tokens)
        x = self.rnn(self.dropout(x), lengths)  # (M, W, E) -> (M, W, 2Hw)
        return self.pool(self.dropout(x), _mask(lengths, tokens.size(1)))  # -> (M, 2Hw)


class SegmentEncoder(nn.Module):
    """Segment vectors of each document -> one vector per document."""

    def __init__(self, config: HANConfig) -> None:
        super().__init__()
        self.rnn = BiRNN(input_size=2 * config.word_hidden, hidden=config.sent_hidden,
                         layers=config.sent_layers, cell=config.cell, dropout=config.dropout)
        self.pool = AttentionPool(2 * config.sent_hidden)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, segments: torch.Tensor, seg_counts: torch.Tensor) -> torch.Tensor:
        batch, width = seg_counts.size(0), int(seg_counts.max())
        doc_of_seg = torch.repeat_interleave(torch.arange(batch, device=segments.device),
                                             seg_counts)
        # Rows past the batch's segments are padding (han.device.batch_tensors).
        segments = segments[: doc_of_seg.size(0)]  # (M', 2Hw) -> (M, 2Hw)
        first_of_doc = torch.cumsum(seg_counts, 0) - seg_counts
        slot = torch.arange(segments.size(0), device=segments.device) - first_of_doc[doc_of_seg]
        grid = segments.new_zeros(batch, width, segments.size(1))
        grid[doc_of_seg, slot] = segments  # (M, 2Hw) -> (B, S, 2Hw)
        x = self.rnn(grid, seg_counts)  # (B, S, 2Hw) -> (B, S, 2Hs)
        return self.pool(self.dropout(x), _mask(seg_counts, width))  # -> (B, 2Hs)


class HAN(nn.Module):
    def __init__(self, config: HANConfig) -> None:
        super().__init__()
        self.config = config
        self.words = WordEncoder(config)
        self.segments = SegmentEncoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classify = nn.Linear(2 * config.sent_hidden, config.num_classes)

    def forward(self, tokens: torch.Tensor, token_lengths: torch.Tensor,
                seg_counts: torch.Tensor) -> torch.Tensor:
        """Logits for a batch given as its real segments (see `han.batching.Batch`).

        tokens (M', W), token_lengths (M',), seg_counts (B,): the first sum(seg_counts) = M
        rows are the documents' segments in order; rows past them (length 0) are ignored.
        """
        segment_vectors = self.words(tokens, token_lengths)  # (M, W) -> (M, 2Hw)
        documents = self.segments(segment_vectors, seg_counts)  # -> (B, 2Hs)
        return self.classify(self.dropout(documents)).float()  # (B, 2Hs) -> (B, C)

    def load_pretrained(self, table: torch.Tensor) -> None:
        if self.words.pretrained is None:
            raise ValueError("the model was configured without pretrained embeddings")
        self.words.pretrained.weight.data.copy_(table)


def config_for(data: EncodedSplit, **model_kwargs: Any) -> HANConfig:
    """The network's shape for this data: vocabulary size, classes and whether it carries
    the frozen word2vec table come from the data, the rest from `model_kwargs`."""
    return HANConfig(vocab_size=data.vocab.size, num_classes=data.num_classes,
                     pretrained_embeddings=data.pretrained is not None, **model_kwargs)


def trainable_parameters(config: HANConfig) -> int:
    """The parameters an optimiser updates in a model of `config`, counted on the meta device
    (no memory taken)."""
    with torch.device("meta"):
        model = HAN(config)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
