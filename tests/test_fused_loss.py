"""The fused LM-head loss (`LinearCrossEntropy`) is the checkpointed per-chunk loss computed in
one pass: the same loss and the same gradients for the hidden states and for the head, in
float64 to the last bits and under bf16 autocast to bf16's rounding."""

import pytest
import torch
from torch import nn

from instill.config import TrainConfig
from instill.data.masking import IGNORE_INDEX
from instill.models.adapters import apply_method
from instill.models.loss import LinearCrossEntropy, head_parts, supervised_ce_sum
from instill.models.tiny import build_tiny_model
from instill.train.sft import SupervisedLoss

VOCAB, DIM = 97, 16


def _inputs(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 21, DIM, generator=g, dtype=dtype)
    labels = torch.randint(0, VOCAB, (3, 21), generator=g)
    labels[0, :8] = IGNORE_INDEX  # a prompt
    labels[2, 15:] = IGNORE_INDEX  # padding
    return hidden, labels


def _loss_and_grads(head, hidden, labels, fused, chunk=7, softcap=None, autocast=False):
    head.zero_grad(set_to_none=True)
    h = hidden.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss, n = supervised_ce_sum(h, labels, head, chunk, softcap, fused=fused)
    (loss * 0.37).backward()  # a scale, as the loop's division by the step's weight
    grads = {k: p.grad for k, p in head.named_parameters() if p.grad is not None}
    return loss.detach(), n, h.grad, grads


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("trains_head", [False, True])
def test_fused_equals_checkpointed_in_float64(trains_head, softcap):
    head = nn.Linear(DIM, VOCAB, bias=False).double()
    head.weight.requires_grad_(trains_head)
    hidden, labels = _inputs()
    ref = _loss_and_grads(head, hidden, labels, fused=False, softcap=softcap)
    got = _loss_and_grads(head, hidden, labels, fused=True, softcap=softcap)
    assert got[1] == ref[1] == int((labels[:, 1:] != IGNORE_INDEX).sum())
    torch.testing.assert_close(got[0], ref[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(got[2], ref[2], rtol=1e-10, atol=1e-14)
    assert got[3].keys() == ref[3].keys() == ({"weight"} if trains_head else set())
    for k in ref[3]:
        torch.testing.assert_close(got[3][k], ref[3][k], rtol=1e-10, atol=1e-14)


def test_fused_under_bf16_autocast_rounds_like_the_checkpointed_path():
    """Both compute bf16 logits and an fp32 log-softmax, and the logits' gradient G enters the
    head's matmuls in bf16. They differ only in where the loop's scale is applied (before or
    after that rounding), so each gradient element differs by at most two bf16 roundings
    (2^-8 relative each) of the terms it sums: 2^-7 x (|G| |W|) for the hidden states and
    2^-7 x (|G|^T |X|) for the head."""
    head = nn.Linear(DIM, VOCAB, bias=False)
    hidden, labels = _inputs(torch.float32)
    ref = _loss_and_grads(head, hidden, labels, fused=False, autocast=True)
    got = _loss_and_grads(head, hidden, labels, fused=True, autocast=True)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-6, atol=0)
    keep = labels[:, 1:] != IGNORE_INDEX
    x = hidden[:, :-1][keep].to(torch.bfloat16).double()  # [n, dim]
    w = head.weight.detach().to(torch.bfloat16).double()  # [vocab, dim]
    g = torch.softmax(x @ w.t(), dim=-1)  # [n, vocab]
    g[torch.arange(len(g)), labels[:, 1:][keep]] -= 1
    g = g.abs() * 0.37
    bound_h = 2**-6 * (g @ w.abs()) + 1e-7  # [n, dim]
    diff_h = (got[2] - ref[2])[:, :-1][keep].double().abs()
    assert (diff_h <= bound_h).all(), (diff_h / bound_h).max()
    assert got[2][:, -1].abs().max() == 0 and ref[2][:, -1].abs().max() == 0
    bound_w = 2**-6 * (g.t() @ x.abs()) + 1e-7  # [vocab, dim]
    diff_w = (got[3]["weight"] - ref[3]["weight"]).double().abs()
    assert (diff_w <= bound_w).all(), (diff_w / bound_w).max()


def test_tied_head_accumulates_with_the_embedding_gradient():
    embed = nn.Embedding(VOCAB, DIM).double()
    head = nn.Linear(DIM, VOCAB, bias=False).double()
    head.weight = embed.weight  # tied, as SmolLM2 and Gemma
    ids = torch.randint(0, VOCAB, (3, 21), generator=torch.Generator().manual_seed(3))
    _, labels = _inputs()
    grads = []
    for fused in (False, True):
        embed.zero_grad(set_to_none=True)
        hidden = torch.tanh(embed(ids))
        loss, _ = supervised_ce_sum(hidden, labels, head, 5, fused=fused)
        loss.backward()
        grads.append(embed.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-14)


def test_lora_model_with_trained_token_rows_gets_the_same_gradients():
    """PEFT's trainable token rows on the head (a base model's turn markers): the fused loss
    multiplies by the merged weight and routes its gradient to the trained rows only."""
    grads = []
    for fused in (False, True):
        model = build_tiny_model("tiny-random-llama").double()
        cfg = TrainConfig(method="lora", lora={"r": 4, "alpha": 8, "targets": "all-linear"})
        model = apply_method(model, cfg, token_ids=[5, 7])
        loss_model = SupervisedLoss(model, chunk_tokens=6, fused_head=fused)
        # the head's frozen weight and the trained rows, never the merged [vocab, dim] weight
        weight, rows, index = head_parts(model.get_base_model().get_output_embeddings())
        assert not weight.requires_grad and rows.requires_grad and index.tolist() == [5, 7]
        g = torch.Generator().manual_seed(4)
        ids = torch.randint(3, 512, (2, 16), generator=g)
        labels = ids.clone()
        labels[:, :5] = IGNORE_INDEX
        labels[0, 9] = 7  # a trained row is a target
        loss, _ = loss_model(ids, labels)
        loss.backward()
        named = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        assert any("trainable_tokens_delta" in n for n in named)
        grads.append((loss.detach(), named))
    (ref_loss, ref), (got_loss, got) = grads
    torch.testing.assert_close(got_loss, ref_loss, rtol=1e-12, atol=0)
    for n in ref:
        torch.testing.assert_close(got[n], ref[n], rtol=1e-9, atol=1e-13)


def test_heads_it_cannot_fuse_take_the_checkpointed_path():
    assert head_parts(nn.Linear(DIM, VOCAB, bias=True)) is None
    assert head_parts(nn.Sequential(nn.Linear(DIM, VOCAB, bias=False))) is None
    head = nn.Linear(DIM, VOCAB, bias=True).double()
    hidden, labels = _inputs()
    ref = _loss_and_grads(head, hidden, labels, fused=False)
    got = _loss_and_grads(head, hidden, labels, fused=True)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[2], ref[2])


def test_no_grad_and_nothing_labelled_fall_back():
    head = nn.Linear(DIM, VOCAB, bias=False).double()
    hidden, labels = _inputs()
    with torch.no_grad():
        a, _ = supervised_ce_sum(hidden, labels, head, 7, fused=True)
        b, _ = supervised_ce_sum(hidden, labels, head, 7, fused=False)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    none = torch.full_like(labels, IGNORE_INDEX)
    h = hidden.clone().requires_grad_(True)
    loss, n = supervised_ce_sum(h, none, head, 7, fused=True)
    loss.backward()  # every parameter still takes part (DDP ranks stay in step)
    assert n == 0 and loss.item() == 0.0 and head.weight.grad is not None


def test_function_returns_a_scalar_sum():
    hidden, labels = _inputs()
    x = hidden[0, :10]
    w = torch.randn(VOCAB, DIM, dtype=torch.float64)
    t = labels[1, :10]
    loss = LinearCrossEntropy.apply(x, w, None, None, t, 4, None)
    want = torch.nn.functional.cross_entropy(x @ w.t(), t, reduction="sum")
    assert loss.shape == () and torch.allclose(loss, want, rtol=1e-12)


def test_checkpointed_chunks_are_capped_by_bytes_with_the_same_result(monkeypatch):
    """Per-row log-probs (DPO, scoring) keep a chunk's `[chunk, vocab]` fp32 buffer within
    CHUNK_BYTES, as the fused loss does: fewer rows per chunk, the same sums."""
    import instill.models.loss as loss_module

    assert loss_module.capped_chunk(1024, 262_144) == 256  # Gemma 3's head at 256 MiB
    assert loss_module.capped_chunk(1024, 49_152) == 1024  # SmolLM2's: the rows asked for
    assert loss_module.capped_chunk(1024, None) == 1024
    head = nn.Linear(DIM, VOCAB, bias=False).double()
    hidden, labels = _inputs()
    ref, counts = loss_module.labelled_logprobs(hidden, labels, head, chunk_tokens=1024)
    seen: list[int] = []
    chunk_nll = loss_module._chunk_nll

    def recording(lm_head, h, t, softcap):
        seen.append(h.shape[0])
        return chunk_nll(lm_head, h, t, softcap)

    monkeypatch.setattr(loss_module, "_chunk_nll", recording)
    monkeypatch.setattr(loss_module, "CHUNK_BYTES", 5 * VOCAB * 4)  # 5 rows of fp32 logits
    got, got_counts = loss_module.labelled_logprobs(hidden, labels, head, chunk_tokens=1024)
    assert max(seen) == 5 and sum(seen) == int(counts.sum()) > 5
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(got_counts, counts)


def _exact_softmax_xent(logits: torch.Tensor, targets: torch.Tensor):
    z = logits.double()
    logp = torch.log_softmax(z, dim=-1)
    grad = logp.exp()
    grad[torch.arange(len(targets)), targets] -= 1.0
    return -logp.gather(1, targets[:, None]).squeeze(1), grad


def test_compiled_softmax_kernel_is_the_fp32_log_softmax_of_bf16_logits():
    """The one-kernel softmax (what bf16 training runs) against float64 arithmetic on the same
    bf16 logits: the loss to fp32 summation error (vocab x 2^-24 of the exponentials' sum, as
    a bound on the log), the gradient to one bf16 rounding (2^-8 relative) of each element."""
    import instill.models.loss as loss_module

    kernel = loss_module._FusedSoftmax()
    g = torch.Generator().manual_seed(5)
    for rows, vocab in ((13, 1000), (4, 4099)):
        logits = (torch.randn(rows, vocab, generator=g) * 4).to(torch.bfloat16)
        targets = torch.randint(0, vocab, (rows,), generator=g)
        targets[0] = int(logits[0].float().argmax())  # a confident row: gradient ~0 there
        nll, grad = kernel(logits, targets)
        assert kernel._fn is not loss_module._softmax_xent_grad  # compiled, not the fallback
        assert nll.dtype == torch.float32 and grad.dtype == torch.bfloat16
        want_nll, want_grad = _exact_softmax_xent(logits, targets)
        lse = want_nll + logits.double().gather(1, targets[:, None]).squeeze(1)
        bound = vocab * 2**-24 + lse.abs() * 2**-23
        assert ((nll.double() - want_nll).abs() <= bound).all()
        diff = (grad.double() - want_grad).abs()
        assert (diff <= 2**-8 * want_grad.abs() + 1e-30).all(), diff.max()
        assert (grad[torch.arange(rows), targets] <= 0).all()


def test_compiled_softmax_falls_back_to_the_same_arithmetic(monkeypatch, caplog):
    """No C++ compiler, or any other compile failure: one warning, then the eager function."""
    import instill.models.loss as loss_module

    def broken(fn, **kwargs):
        def run(*args):
            raise RuntimeError("InductorError: no working C++ compiler found")

        return run

    monkeypatch.setattr(loss_module.torch, "compile", broken)
    kernel = loss_module._FusedSoftmax()
    logits = torch.randn(5, 50, generator=torch.Generator().manual_seed(6)).to(torch.bfloat16)
    targets = torch.tensor([0, 3, 49, 7, 7])
    with caplog.at_level("WARNING", logger="instill.models.loss"):
        nll, grad = kernel(logits, targets)
        again = kernel(logits, targets)
    assert [r.getMessage().count("no working C++ compiler") for r in caplog.records] == [1]
    assert loss_module.FUSED_SOFTMAX_ENV in caplog.records[0].getMessage()
    want = loss_module._softmax_xent_grad(logits, targets)
    for got in ((nll, grad), again):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_compiled_softmax_can_be_switched_off(monkeypatch):
    import instill.models.loss as loss_module

    def never(*args, **kwargs):
        raise AssertionError("compiled although INSTILL_FUSED_SOFTMAX=0")

    monkeypatch.setattr(loss_module.torch, "compile", never)
    monkeypatch.setenv(loss_module.FUSED_SOFTMAX_ENV, "0")
    kernel = loss_module._FusedSoftmax()
    logits = torch.randn(3, 20).to(torch.bfloat16)
    nll, _ = kernel(logits, torch.tensor([1, 2, 3]))
    want, _ = _exact_softmax_xent(logits, torch.tensor([1, 2, 3]))
    torch.testing.assert_close(nll.double(), want, rtol=1e-6, atol=1e-6)


def test_trained_rows_under_bf16_autocast_follow_the_merged_weight():
    """bf16 training of a head with PEFT's trained rows (the fused kernel, the rows' columns
    overwritten instead of a copied weight) against float64 arithmetic on the merged weight's
    bf16 values. Bounds: each logit is a bf16 rounding of an fp32 sum (2^-8 of its size), so a
    row's loss moves by at most twice its largest logit change and each gradient element
    (softmax - onehot, its bf16 rounding, a bf16 matmul) by (2^-7 + 4 max|dz|) of |G| |W|."""
    g = torch.Generator().manual_seed(7)
    n, vocab, dim = 19, VOCAB, DIM
    x = torch.randn(n, dim, generator=g)
    w = torch.randn(vocab, dim, generator=g) * 0.5
    index = torch.tensor([5, 40])
    rows = (w[index] + torch.randn(2, dim, generator=g)).requires_grad_(True)
    targets = torch.randint(0, vocab, (n,), generator=g)
    targets[:6] = torch.tensor([5, 40, 5, 40, 5, 40])  # the trained rows are targets
    h = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = LinearCrossEntropy.apply(h, w, rows, index, targets, 7, None)
    loss.backward()
    xb = x.to(torch.bfloat16).double()
    merged = w.to(torch.bfloat16).double()
    merged[index] = rows.detach().to(torch.bfloat16).double()
    z = xb @ merged.t()
    want_nll, grad = _exact_softmax_xent(z, targets)
    dz = (z.abs().amax(1) * 2**-8)[:, None]  # [n, 1]
    assert abs(loss.item() - want_nll.sum().item()) <= 2 * dz.sum().item()
    bound_h = (2**-7 + 4 * dz) * (grad.abs() @ merged.abs())
    assert ((h.grad.double() - grad @ merged).abs() <= bound_h).all()
    want_rows = grad[:, index].t() @ xb
    bound_r = (grad[:, index].abs() * (2**-7 + 4 * dz)).t() @ xb.abs()
    assert ((rows.grad.double() - want_rows).abs() <= bound_r).all()
