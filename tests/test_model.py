from __future__ import annotations

import numpy as np
import pytest
import torch

from han.batching import make_batch, segment
from han.config import HANConfig
from han.device import CPU_ROW_MULTIPLE, CPU_WIDTH_MULTIPLE, batch_tensors
from han.model import HAN, AttentionPool, reverse_within_length
from han.predict import predict_probabilities
from han.train import class_weights, cross_entropy, train_step


def small_config(**overrides) -> HANConfig:
    settings = dict(vocab_size=50, num_classes=5, embed_dim=8, word_hidden=6, sent_hidden=7)
    return HANConfig(**(settings | overrides))


def random_documents(rng: np.random.Generator, lengths: list[int]):
    tokens = rng.integers(2, 50, size=sum(lengths)).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return segment(tokens, offsets, seg_len=5, max_segments=4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_logits_do_not_depend_on_batch_mates(cell: str) -> None:
    torch.manual_seed(0)
    model = HAN(small_config(cell=cell)).eval()
    rng = np.random.default_rng(0)
    # A short document next to much longer ones: more segments, wider segments.
    segments = random_documents(rng, [3, 40, 17, 8])
    device = torch.device("cpu")
    with torch.no_grad():
        together = model(*batch_tensors(make_batch(segments, np.arange(4)), device))
        for doc in range(4):
            alone = model(*batch_tensors(make_batch(segments, np.array([doc])), device))
            assert torch.allclose(alone[0], together[doc], atol=1e-5)


def test_prediction_in_chunks_of_tokens_equals_whole_batches() -> None:
    torch.manual_seed(0)
    model = HAN(small_config())
    segments = random_documents(np.random.default_rng(2), [3, 40, 17, 8, 25, 1, 12])
    docs = np.arange(7)
    cpu = torch.device("cpu")
    whole = predict_probabilities(model, segments, docs, batch_size=7, device=cpu,
                                  max_tokens=10**9)
    # 20 tokens: one or two documents a forward pass, one alone when it is larger than that.
    chunked = predict_probabilities(model, segments, docs, batch_size=7, device=cpu,
                                    max_tokens=20)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)


def test_shapes_and_no_nan_for_single_token_documents() -> None:
    model = HAN(small_config()).eval()
    segments = random_documents(np.random.default_rng(1), [1, 1, 25])
    batch = make_batch(segments, np.arange(3))
    logits = model(*batch_tensors(batch, torch.device("cpu")))
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()


def test_attention_pool_gives_zero_for_fully_padded_rows() -> None:
    pool = AttentionPool(4)
    x = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = pool(x, mask)
    assert torch.isfinite(out).all() and torch.equal(out[1], torch.zeros(4))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.equal(x.grad[0, 2], torch.zeros(4))  # padding gets no gradient


def test_reverse_within_length_is_its_own_inverse() -> None:
    x = torch.arange(12.0).reshape(2, 6, 1)
    lengths = torch.tensor([4, 6])
    flipped = reverse_within_length(x, lengths)
    assert flipped[0, :, 0].tolist() == [3, 2, 1, 0, 4, 5]
    assert torch.equal(reverse_within_length(flipped, lengths), x)


def test_pretrained_embeddings_are_frozen_and_added() -> None:
    model = HAN(small_config(pretrained_embeddings=True))
    table = torch.randn(50, 8)
    model.load_pretrained(table)
    assert not model.words.pretrained.weight.requires_grad
    assert torch.equal(model.words.embed.weight, torch.zeros(50, 8))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "words.pretrained.weight" not in trainable


def test_class_weights_follow_the_scheme() -> None:
    labels = np.array([0] * 8 + [1] * 2)
    assert class_weights(labels, 3, "none") is None
    inverse = class_weights(labels, 3, "inverse")
    # n / (C n_c) over the classes present; a class without training documents gets 0.
    np.testing.assert_allclose(inverse, [10 / 16, 10 / 4, 0.0])
    np.testing.assert_allclose(class_weights(labels, 3, "sqrt"), np.sqrt(inverse))


def test_weighted_step_in_chunks_equals_one_pass() -> None:
    segments = random_documents(np.random.default_rng(3), [3, 40, 17, 8, 25, 1])
    labels = np.array([0, 1, 1, 2, 0, 0])
    batch = make_batch(segments, np.arange(6), labels)
    weights = class_weights(labels, 5, "inverse")
    grads = []
    for max_tokens in (None, 20):
        torch.manual_seed(0)
        model = HAN(small_config(dropout=0.0))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        loss, _ = train_step(model, optimizer, batch, torch.device("cpu"), clip=1e9,
                             bf16=False, max_tokens=max_tokens, weights=weights)
        grads.append((float(loss), model.classify.weight.grad.clone()))
    (whole_loss, whole_grad), (chunked_loss, chunked_grad) = grads
    assert chunked_loss == pytest.approx(whole_loss, rel=1e-5)
    torch.testing.assert_close(chunked_grad, whole_grad, atol=1e-6, rtol=1e-4)
    # The weighted mean: the documents' losses over their classes' total weight.
    torch.manual_seed(0)
    model = HAN(small_config(dropout=0.0)).eval()
    logits = model(*batch_tensors(batch, torch.device("cpu")))
    per_doc = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels),
                                                reduction="none").detach().numpy()
    expected = (per_doc * weights[labels]).sum() / weights[labels].sum()
    assert whole_loss == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_of_a_uniform_guess_is_log_classes() -> None:
    probabilities = np.full((4, 5), 0.2)
    assert cross_entropy(probabilities, np.array([0, 1, 2, 4])) == pytest.approx(np.log(5))


def test_padding_rows_and_width_change_no_logit() -> None:
    torch.manual_seed(0)
    model = HAN(small_config()).eval()
    batch = make_batch(random_documents(np.random.default_rng(4), [3, 17, 9]), np.arange(3))
    tokens, lengths, counts = batch_tensors(batch, torch.device("cpu"))
    rows = batch.tokens.shape[0]
    # batch_tensors pads a CPU batch to whole multiples of rows and columns.
    assert tokens.shape[0] % CPU_ROW_MULTIPLE == 0 and tokens.shape[1] % CPU_WIDTH_MULTIPLE == 0
    assert tokens.shape[0] > rows and not lengths[rows:].any()
    exact = (torch.from_numpy(batch.tokens.astype(np.int64)),
             torch.from_numpy(batch.token_lengths.astype(np.int64)),
             torch.from_numpy(batch.seg_counts.astype(np.int64)))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens, lengths, counts), model(*exact),
                                   atol=1e-6, rtol=1e-5)
