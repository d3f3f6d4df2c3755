import json

import pytest

from hydra_eval.data.loader import load_samples
from hydra_eval.errors import UserError
from tests.conftest import DATA_DIR


def test_piqa_reads_the_original_files(compose_cfg):
    data = load_samples(compose_cfg("dataset=piqa").dataset)
    assert len(data.samples) == 1838
    assert data.fingerprint["valid.jsonl"].startswith("93503cc97c67")
    assert {s.gold for s in data.samples} == {0, 1}


def test_siqa_labels_become_zero_based(compose_cfg):
    data = load_samples(compose_cfg("dataset=siqa", "dataset.limit=50").dataset)
    assert len(data.samples) == 50
    first_label = (DATA_DIR / "siqa" / "dev-labels.lst").read_text().split()[0]
    assert data.samples[0].gold == int(first_label) - 1


def test_stride_takes_every_kth_row_and_keeps_its_index(compose_cfg):
    full = load_samples(compose_cfg("dataset=piqa").dataset).samples
    sampled = load_samples(compose_cfg("dataset=piqa", "dataset.stride=100").dataset).samples
    assert [s.id for s in sampled] == [s.id for s in full[::100]]
    assert [s.fields for s in sampled] == [s.fields for s in full[::100]]
    assert (
        len(load_samples(compose_cfg("dataset=piqa", "dataset.stride=100", "dataset.limit=5").dataset).samples)
        == 5
    )
    with pytest.raises(UserError, match="stride"):
        load_samples(compose_cfg("dataset=piqa", "dataset.stride=0").dataset)


def write_piqa(folder, rows, labels):
    folder.mkdir(parents=True)
    (folder / "valid.jsonl").write_text("".join(r + "\n" for r in rows))
    (folder / "valid-labels.lst").write_text("".join(f"{y}\n" for y in labels))


def test_malformed_row_names_file_and_line(compose_cfg, tmp_path):
    good = json.dumps({"goal": "g", "sol1": "a", "sol2": "b"})
    write_piqa(tmp_path / "piqa", [good, "{not json"], [0, 1])
    with pytest.raises(UserError, match=r"valid.jsonl:2: malformed row"):
        load_samples(compose_cfg(f"paths.data_dir={tmp_path}").dataset)


def test_missing_field_names_the_row(compose_cfg, tmp_path):
    write_piqa(tmp_path / "piqa", [json.dumps({"goal": "g", "sol1": "a"})], [0])
    with pytest.raises(UserError, match=r"piqa row 1: malformed row, missing field\(s\) sol2"):
        load_samples(compose_cfg(f"paths.data_dir={tmp_path}").dataset)


def test_a_repeated_id_is_refused_for_every_dataset(compose_cfg, tmp_path):
    """ARC takes its ids from its rows: a copy where two rows share one cannot be compared row by row."""
    first, second = (DATA_DIR / "arc_easy" / "ARC-Easy-Test.jsonl").read_text().splitlines()[:2]
    path = tmp_path / "arc.jsonl"
    path.write_text("\n".join([first, second, first]) + "\n")
    cfg = compose_cfg("dataset=arc_easy", f"dataset.path={path}")
    qid = json.loads(first)["id"]
    expected = rf"arc.jsonl row 3: malformed row, id '{qid}' again \(first at .*arc.jsonl row 1\)"
    with pytest.raises(UserError, match=expected):
        load_samples(cfg.dataset)
    limited = compose_cfg("dataset=arc_easy", f"dataset.path={path}", "dataset.limit=2")  # the repeat left out
    assert len(load_samples(limited.dataset).samples) == 2


def test_missing_data_says_where_it_looked(compose_cfg, tmp_path):
    cfg = compose_cfg(f"paths.data_dir={tmp_path}", "dataset.hf_path=null").dataset
    with pytest.raises(UserError, match=f"no data for dataset 'piqa'.*{tmp_path}/piqa"):
        load_samples(cfg)


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_the_hub_offline_variables_fail_at_once_with_no_lookup(compose_cfg, tmp_path, monkeypatch, var):
    """HF_HUB_OFFLINE / HF_DATASETS_OFFLINE: no DNS lookup of the hub's host, one line naming the variable."""
    import socket

    looked_up: list[str] = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: looked_up.append(host) or [])
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv(var, "1")
    cfg = compose_cfg(f"paths.data_dir={tmp_path}").dataset
    with pytest.raises(UserError, match=f"hub 'baber/piqa' failed: ConnectionError: {var}=1 turns the hub off"):
        load_samples(cfg)
    assert looked_up == []


def test_hub_code_path_with_a_local_folder_in_hub_layout(compose_cfg, tmp_path):
    """No local copy -> datasets.load_dataset(hf_path). Here hf_path is a folder laid out like the hub repo."""
    hub = tmp_path / "hub_piqa"
    hub.mkdir()
    rows = [{"goal": f"g{i}", "sol1": "a", "sol2": "b", "label": i % 2} for i in range(6)]
    (hub / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = compose_cfg(f"paths.data_dir={tmp_path / 'empty'}", f"dataset.hf_path={hub}").dataset
    data = load_samples(cfg)
    assert [s.gold for s in data.samples] == [0, 1, 0, 1, 0, 1]
    assert data.source.startswith("hf://")


def test_hellaswag_reads_the_derived_text_file(compose_cfg):
    data = load_samples(compose_cfg("dataset=hellaswag").dataset)
    assert len(data.samples) == 10042
    first = data.samples[0]
    assert first.fields["ctx"] == "Roof shingle removal: A man is sitting on a roof. he"
    assert first.fields["ending3"] == "starts pulling up roofing on a roof." and first.gold == 3


def test_hellaswag_hub_rows_are_cleaned_like_lmeval():
    from hydra_eval.data.hellaswag import record_to_sample

    row = {
        "activity_label": "Cooking",
        "ctx_a": "A man cuts [title] onions.",
        "ctx_b": "he",
        "label": "1",
        "endings": ["fries them.", "[step] eats  them.", "c", "d"],
    }
    sample = record_to_sample(row, 0)
    assert sample.fields["ctx"] == "Cooking: A man cuts. onions. He"
    assert sample.fields["ending1"] == " eats them." and sample.gold == 1
