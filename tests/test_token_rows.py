"""The int32 data path: prepared rows as flat buffers, and batches gathered from them."""

import numpy as np
import pytest
import torch

from instill.data.masking import IGNORE_INDEX
from instill.data.prepared import TokenRows, supervised_per_row
from instill.train.data import collate

ROWS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14], [15]]
LABELS = [[5, -100, 7, 8, -100], [10, 11], [-100, -100, 14], [15]]
POSITIONS = [[0, 1, 2, 0, 1], [0, 1], [0, 1, 0], [0]]


def _naive_collate(ids, labels, pos, idx, pad, width):
    """The reference: one row at a time, as the loop did before the int32 path."""
    out_ids = torch.full((len(idx), width), pad)
    out_labels = torch.full((len(idx), width), IGNORE_INDEX)
    out_pos = torch.zeros((len(idx), width), dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for b, i in enumerate(idx):
        k = len(ids[i])
        out_ids[b, :k] = torch.tensor(ids[i])
        out_labels[b, :k] = torch.tensor(labels[i])
        mask[b, :k] = 1
        if pos is not None:
            out_pos[b, :k] = torch.tensor(pos[i])
            out_pos[b, k:] = torch.arange(width - k)
    return out_ids, out_labels, out_pos, mask


def test_supervised_counts_skip_each_rows_first_label():
    rows = TokenRows.from_lists(ROWS, LABELS)
    # row 0: labels 7, 8 (5 is the row's first label, never predicted)
    assert rows.supervised.tolist() == [2, 1, 1, 0]
    assert rows.supervised_count([0, 2]) == 3
    assert rows.token_count([0, 1, 3]) == 8
    assert rows.input_ids.dtype == np.int32 and rows.labels.dtype == np.int32


def test_supervised_counts_of_empty_rows_are_zero():
    labels = np.array([1, 2, 3], dtype=np.int32)
    assert supervised_per_row(labels, np.array([0, 0, 3, 3])).tolist() == [0, 2, 0]


@pytest.mark.parametrize("packed", [True, False])
def test_gathered_batches_equal_row_by_row_batches(packed):
    pos = POSITIONS if packed else None
    rows = TokenRows.from_lists(ROWS, LABELS, pos)
    for idx in ([0, 1, 2, 3], [3, 1], [2]):
        batch = collate(rows, idx, pad_id=99, fixed_length=8 if packed else None)
        width = 8 if packed else -(-max(len(ROWS[i]) for i in idx) // 8) * 8
        ids, labels, positions, mask = _naive_collate(ROWS, LABELS, pos, idx, 99, width)
        assert torch.equal(batch["input_ids"], ids)
        assert torch.equal(batch["labels"], labels)
        if packed:
            assert torch.equal(batch["position_ids"], positions)
            assert batch["attention_mask"] is None
        else:
            assert torch.equal(batch["attention_mask"], mask)
            assert batch["position_ids"] is None


def test_an_empty_micro_batch_has_no_supervised_token():
    rows = TokenRows.from_lists(ROWS, LABELS, POSITIONS)
    batch = collate(rows, [], pad_id=0, fixed_length=8)
    assert batch["input_ids"].shape == (1, 8)
    assert (batch["labels"] == IGNORE_INDEX).all()


def test_rows_load_from_an_arrow_dataset_without_arrays(tmp_path):
    import datasets

    ints = datasets.Sequence(datasets.Value("int32"))
    features = datasets.Features({"input_ids": ints, "labels": ints, "position_ids": ints})
    ds = datasets.Dataset.from_dict(
        {"input_ids": ROWS, "labels": LABELS, "position_ids": POSITIONS}, features=features
    )
    ds.save_to_disk(str(tmp_path / "prepared"))
    rows = TokenRows.load(tmp_path / "prepared")
    expected = TokenRows.from_lists(ROWS, LABELS, POSITIONS)
    for column in ("input_ids", "labels", "position_ids", "offsets", "supervised"):
        assert np.array_equal(getattr(rows, column), getattr(expected, column)), column
    assert rows.input_ids.dtype == np.int32
    assert rows.row(2)["labels"].tolist() == LABELS[2]


def test_prepare_writes_flat_arrays_that_load_memory_mapped(tmp_path):
    from instill.config import validate_config
    from instill.data.prepare import prepare
    from instill.models.tokenizer_loading import load_tokenizer_for
    from tests.test_train import make_config

    for packing in (True, False):
        raw = make_config(tmp_path / str(packing))
        raw["data"]["packing"] = packing
        config = validate_config(raw)
        prepared = prepare(config, load_tokenizer_for(config), progress=False)
        directory = prepared.output_dir / "prepared"
        rows = TokenRows.load(directory)
        assert isinstance(rows.input_ids, np.memmap) and isinstance(rows.labels, np.memmap)
        assert rows.input_ids.dtype == np.int32
        assert rows.packed == packing
        # The same rows as the Arrow dataset beside them, which users and their tools read.
        import datasets

        ds = datasets.load_from_disk(str(directory))
        assert len(rows) == len(ds)
        for i in (0, len(ds) // 2, len(ds) - 1):
            assert rows.row(i)["input_ids"].tolist() == ds[i]["input_ids"]
            assert rows.row(i)["labels"].tolist() == ds[i]["labels"]
            if packing:
                assert rows.row(i)["position_ids"].tolist() == ds[i]["position_ids"]
        arrow = TokenRows.from_table(ds.data.table)
        assert np.array_equal(arrow.supervised, rows.supervised)


def test_misaligned_columns_are_refused():
    with pytest.raises(ValueError, match="do not line up"):
        TokenRows.from_arrays(
            np.zeros(3, np.int32), np.zeros(2, np.int32), np.array([0, 3], np.int64)
        )
