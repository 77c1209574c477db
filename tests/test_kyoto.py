"""The kyoto2013 loader on files written here in the Kyoto 2013 format (24 columns; the
published *.txt are tab-separated, GRU-SVM's authors convert them to *.csv), checked
against bins worked out by hand from the authors' preparation (dataset/normalize_data.py,
bin_data.py: 10 equal-width bins np.digitize(v, linspace(min, max, 10), right=True))."""
import json

import numpy as np
import pytest
import torch
import yaml

from fedsim.cli import main
from fedsim.data.datasets import (KYOTO2013_COLUMNS, KYOTO2013_FEATURES, DataError, kyoto2013_bins, kyoto2013_files,
                                  load_dataset, read_kyoto2013)

from tests.conftest import tiny_scenario


def record(duration="0", service="other", src_bytes="0", label="1", start="00:00:00", protocol="tcp",
           ids="0", flag="S0", src_port="1000") -> list[str]:
    """One record, the columns of the authors' sample-data.csv (IPv6-anonymised addresses)."""
    fields = dict.fromkeys(KYOTO2013_COLUMNS, "0")
    fields.update(duration=duration, service=service, src_bytes=src_bytes, label=label, start_time=start,
                  protocol=protocol, ids_detection=ids, flag=flag, src_port_num=src_port,
                  same_srv_rate="0.00", src_ip_add="fd75:41fb:cf76:20be:183a:1595:1ea6:5922",
                  dst_ip_add="fd75:41fb:cf76:39ef:7d8b:279c:615c:0d4d", dst_port_num="445")
    return [fields[name] for name in KYOTO2013_COLUMNS]


RECORDS = [   # duration, service, label, start time, protocol, IDS alert
    record(duration="0", service="http", label="1", start="00:00:00", protocol="tcp", ids="0"),
    record(duration="9", service="smtp", label="-1", start="09:00:00", protocol="udp", ids="5100"),
    record(duration="4.5", service="other", label="-2", start="04:30:00", protocol="tcp", ids="0"),
    record(duration="1", service="http", label="1", start="01:00:00", protocol="tcp", ids="0"),
]


def write_kyoto(directory, records=RECORDS):
    """The first two records as a published tab-separated day file, the rest as CSV."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "20131101.txt").write_text("".join("\t".join(r) + "\n" for r in records[:2]))
    (directory / "20131102.csv").write_text("".join(",".join(r) + "\n" for r in records[2:]) + "\n")
    return directory


def column(bins: np.ndarray, name: str) -> list[int]:
    return bins[:, KYOTO2013_FEATURES.index(name)].tolist()


def test_bins_and_labels_by_hand(tmp_path):
    columns, labels = read_kyoto2013(kyoto2013_files(str(write_kyoto(tmp_path / "kyoto"))))
    assert labels.tolist() == [0, 1, 1, 0]                  # -1 known and -2 unknown attack -> 1
    bins = kyoto2013_bins(columns)
    assert bins.shape == (4, 21) and len(KYOTO2013_FEATURES) == 21   # 24 minus label and the two IPs
    # duration 0, 9, 4.5, 1 over edges 0, 1, ..., 9: 4 < 4.5 <= 5 -> 5
    assert column(bins, "duration") == [0, 9, 5, 1]
    # hh:mm:ss -> hours 0, 9, 4.5, 1: the same bins
    assert column(bins, "start_time") == [0, 9, 5, 1]
    # service indexed by sorted symbol (http 0, other 1, smtp 2), then binned over [0, 2]:
    # edges 0, 2/9, ..., 2: 1 falls in (8/9, 10/9] -> 5, 2 -> 9
    assert column(bins, "service") == [0, 9, 5, 0]
    assert column(bins, "protocol") == [0, 1, 0, 0]          # indexed only: tcp 0, udp 1
    assert column(bins, "ids_detection") == [0, 1, 0, 0]     # any signature -> 1
    assert column(bins, "src_bytes") == [0, 0, 0, 0]         # a constant column -> bin 0


def test_dataset_is_the_one_hot_sequence_of_the_bins(tmp_path):
    root = write_kyoto(tmp_path / "kyoto")
    data = load_dataset("kyoto2013", root=str(root), seed=0, test_fraction=0.5)
    assert data.n_classes == 2 and data.image_shape == (21, 10)
    images = torch.cat([data.train_images, data.test_images])
    labels = torch.cat([data.train_labels, data.test_labels])
    assert torch.equal(images.sum(-1), torch.ones(4, 21))   # one value of 10 per feature
    assert sorted(labels.tolist()) == [0, 0, 1, 1] and sorted(data.test_labels.tolist()) == [0, 1]
    expected = torch.eye(10)[torch.as_tensor(kyoto2013_bins(read_kyoto2013(kyoto2013_files(str(root)))[0]))]
    rows = sorted(images.argmax(-1).tolist())
    assert rows == sorted(expected.argmax(-1).tolist())


@pytest.mark.parametrize("line,message", [
    ("\t".join(record()[:23]), "20131101.txt:2: expected 24 tab-separated fields"),
    ("\t".join(record(label="3")), "20131101.txt:2: not a Kyoto 2013 record"),
    ("\t".join(record(duration="fast")), "20131101.txt:2: not a Kyoto 2013 record"),
    ("\t".join(record(start="noon")), "20131101.txt:2: not a Kyoto 2013 record"),
], ids=["23 fields", "label 3", "duration not a number", "start time not hh:mm:ss"])
def test_malformed_record_names_file_and_line(tmp_path, line, message):
    root = tmp_path / "kyoto"
    root.mkdir()
    (root / "20131101.txt").write_text("\t".join(record()) + "\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        load_dataset("kyoto2013", root=str(root))


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(DataError, match="set data.root"):
        load_dataset("kyoto2013")
    with pytest.raises(DataError, match="no such directory"):
        load_dataset("kyoto2013", root=str(tmp_path / "absent"))
    with pytest.raises(DataError, match=r"no \*.txt or \*.csv file"):
        load_dataset("kyoto2013", root=str(tmp_path))


def kyoto_scenario(root) -> dict:
    return tiny_scenario(**{"data.dataset": "kyoto2013", "data.root": str(root), "data.test_per_class": 2,
                            "data.partition": {"kind": "iid"}, "model.backbone": "gru",
                            "model.backbone_args": {"hidden": 8}, "model.head": "l2svm",
                            "model.pretrain": {"epochs": 20, "lr": 0.01}, "rounds": 4, "topology.n_peers": 4,
                            "topology.args": {"degree": 2}})


def test_run_end_to_end_and_malformed_file_is_one_error_line(tmp_path, capsys):
    # 80 records: attacks come from an IDS-flagged, long, udp connection, normal traffic not.
    rng = np.random.default_rng(0)
    records = [record(duration=f"{rng.uniform(5, 9) if attack else rng.uniform(0, 4):.3f}",
                      label="-1" if attack else "1", protocol="udp" if attack else "tcp",
                      ids="5100" if attack else "0", src_port=str(rng.integers(1, 65535)))
               for attack in rng.permutation(np.arange(80) % 2)]
    root = write_kyoto(tmp_path / "kyoto", records)
    path = tmp_path / "kyoto.yaml"
    path.write_text(yaml.safe_dump(kyoto_scenario(root)))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    # The IDS flag and the protocol alone tell the classes apart: GRU-SVM learns them.
    final = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["accuracy_mean"] >= 0.9
    capsys.readouterr()
    with open(root / "20131101.txt", "a") as f:
        f.write("1.0\tother\t0\n")
    assert main(["run", str(path), "--out", str(tmp_path / "run2"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "20131101.txt:3: expected 24" in err[0]   # the txt holds 2 records
