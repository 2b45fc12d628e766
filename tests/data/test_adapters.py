import json
import shutil
import sys

import pytest
from monai.transforms import LoadImaged

from disyre_monai.data import load_datalist
from disyre_monai.data.adapters import (
    DATASETS,
    get_layout,
    make_datalist,
    read_split_file,
    scan_dataset,
    split_subjects,
    write_datalist,
)
from tests.data.fake_layouts import LAYOUTS, brats2021, fake_dataset, write_files

EXPECTED = {  # dataset -> (scans, subjects, role, ships a brain mask)
    "ixi": (5, 5, "healthy", False), "camcan": (6, 6, "healthy", False), "brats2020": (6, 6, "lesion", False),
    "brats2021": (6, 6, "lesion", False), "brats2023": (6, 5, "lesion", False), "atlas": (6, 6, "lesion", False),
    "mslub": (6, 6, "lesion", True), "wmh": (6, 6, "lesion", False),
}


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _subjects(datalist, split):
    return {e["subject"] for e in datalist[split]}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_layout_gives_a_loadable_datalist_with_relative_paths(tmp_path, name):
    root = fake_dataset(name, tmp_path / "release")
    modality = LAYOUTS[name][1]
    output = tmp_path / "lists" / f"{name}.json"
    assert write_datalist(name, str(root), str(output), modality=modality, verbose=False) == str(output)
    written = _read(output)
    n_scans, n_subjects, role, has_mask = EXPECTED[name]
    entries = [e for split in ("training", "validation", "test") for e in written[split]]
    assert len(entries) == n_scans and len({e["subject"] for e in entries}) == n_subjects
    for split in ("training", "validation", "test"):
        for entry in written[split]:
            assert entry["split"] == split and entry["role"] == role and entry["dataset"] == name
            assert entry["modality"] == modality and ("label" in entry) == (role == "lesion")
            assert ("mask" in entry) == has_mask
            for key in ("image", "label", "mask"):
                assert key not in entry or entry[key].startswith("../release/")
        if written[split]:  # what the bundle does with --datalist, without --dataset_dir
            loaded = load_datalist(None, str(output), split)
            assert all(e["image"].startswith(str(root)) for e in loaded)
    if role == "lesion":
        assert not written["training"] and written["metadata"]["label_rule"].startswith("lesion =")
    meta = written["metadata"]
    assert meta["dataset"] == name and meta["modality"] == modality and meta["tool"].startswith("disyre-monai ")
    assert sum(c["scans"] for c in meta["counts"].values()) == n_scans


def test_entries_name_the_right_files(tmp_path):
    root = fake_dataset("brats2020", tmp_path / "b20", n=3)
    entries = {e["case"]: e for e in scan_dataset("brats2020", root, "t1ce")}
    assert entries["BraTS20_Training_001"]["image"].endswith("BraTS20_Training_001/BraTS20_Training_001_t1ce.nii")
    assert entries["BraTS20_Training_355"]["label"].endswith("BraTS20_Training_355/W39_1998.09.19_Segm.nii")
    meta = make_datalist("brats2020", root, "t1ce")["metadata"]
    assert any("W39_1998.09.19_Segm.nii taken as its label" in note for note in meta["notes"])

    mslub = {e["case"]: e for e in scan_dataset("mslub", fake_dataset("mslub", tmp_path / "ms", n=2), "T2W")}
    assert sorted(mslub) == ["patient01", "patient02"]  # raw/ copies ignored
    assert mslub["patient01"]["mask"].endswith("patient01/patient01_brainmask.nii.gz")
    assert mslub["patient01"]["label"].endswith("patient01/patient01_consensus_gt.nii.gz")

    wmh = {e["case"]: e for e in scan_dataset("wmh", fake_dataset("wmh", tmp_path / "wmh", n=4), "flair")}
    assert sorted(wmh) == ["GE3T_2", "Philips_VU_PETMR_01_3", "Singapore_1", "Utrecht_0"]
    assert wmh["Utrecht_0"]["image"].endswith("training/Utrecht/0/pre/FLAIR.nii.gz")
    assert wmh["Utrecht_0"]["label"].endswith("training/Utrecht/0/wmh.nii.gz")

    atlas = scan_dataset("atlas", fake_dataset("atlas", tmp_path / "atlas", n=2), "t1")
    assert [e["case"] for e in atlas] == ["sub-r001s001_ses-1", "sub-r002s002_ses-1"]  # Testing/ ignored
    ixi = scan_dataset("ixi", fake_dataset("ixi", tmp_path / "ixi", n=3), "t2")
    assert [(e["subject"], e["site"]) for e in ixi] == [("IXI003-HH-0801", "HH"), ("IXI004-IOP-0802", "IOP")]


def test_real_nifti_entries_load_with_monai(tmp_path):
    root = fake_dataset("mslub", tmp_path / "ms", n=1)
    entry = scan_dataset("mslub", root, "flair")[0]
    loaded = LoadImaged(keys=["image", "mask", "label"], ensure_channel_first=True)(entry)
    assert loaded["image"].shape == (1, 4, 4, 4) and loaded["label"].shape == (1, 4, 4, 4)


def test_seeded_subject_level_splits(tmp_path):
    root = fake_dataset("brats2023", tmp_path / "gli", n=12)  # 11 subjects, one with two time points
    with pytest.warns(UserWarning, match="in the training split; DISYRE trains on healthy scans only"):
        a = make_datalist("brats2023", root, "t2", seed=3, val_fraction=0.3, test_fraction=0.4)
        b = make_datalist("brats2023", root, "t2", seed=3, val_fraction=0.3, test_fraction=0.4)
        c = make_datalist("brats2023", root, "t2", seed=4, val_fraction=0.3, test_fraction=0.4)
    assert a == b
    assert any(_subjects(a, s) != _subjects(c, s) for s in ("training", "validation", "test"))
    for datalist in (a, c):
        groups = [_subjects(datalist, s) for s in ("training", "validation", "test")]
        assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
        assert [len(g) for g in groups] == [3, 4, 4]  # 11 subjects: test round(4.4), test+val round(7.7)
        split_of = {e["case"]: s for s in ("training", "validation", "test") for e in datalist[s]}
        assert split_of["BraTS-GLI-00000-000"] == split_of["BraTS-GLI-00000-001"]


def test_split_fractions_are_validated():
    assert split_subjects(["s1", "s1", "s2", "s3", "s4"], 0, 0.25, 0.5) == split_subjects(["s4", "s3", "s2", "s1"], 0,
                                                                                          0.25, 0.5)
    assert sum(map(len, split_subjects([f"s{i}" for i in range(7)], 1, 0.5, 0.5).values())) == 7
    assert split_subjects([f"s{i}" for i in range(7)], 1, 0.5, 0.5)["training"] == []
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction must be at most 1"):
        split_subjects(["a"], 0, 0.6, 0.5)
    with pytest.raises(ValueError, match="test_fraction must be in \\[0.0, 1.0\\], got -0.1"):
        split_subjects(["a"], 0, 0.1, -0.1)
    with pytest.raises(ValueError, match="seed must be an integer"):
        split_subjects(["a"], 0.5)


def test_missing_and_mismatched_files_are_all_listed(tmp_path):
    root = tmp_path / "b21"
    files = [f for f in brats2021(4) if not f.endswith(("00001_t2.nii.gz", "00002_seg.nii.gz"))]
    write_files(root, files + ["BraTS2021_00009/BraTS2021_00009_seg.nii.gz"])  # a seg with no image
    with pytest.raises(FileNotFoundError) as error:
        scan_dataset("brats2021", root, "t2")
    message = str(error.value)
    assert "3 scan(s) with missing files" in message
    assert "BraTS2021_00001 (" in message and "no t2 image" in message
    assert "BraTS2021_00002 (" in message and "no lesion label" in message
    assert "BraTS2021_00009 (" in message and "ship no segmentation" in message
    with pytest.warns(UserWarning, match="3 scan\\(s\\) with missing files.*left out"):
        datalist = make_datalist("brats2021", root, "t2", on_missing="skip")
    assert datalist["metadata"]["skipped_scans"] == ["BraTS2021_00001", "BraTS2021_00002", "BraTS2021_00009"]
    assert sum(len(datalist[s]) for s in ("validation", "test")) == 2
    left_out = "2 scan\\(s\\) with missing files.*BraTS2021_00009 \\([^)]*BraTS2021_00009\\)"
    with pytest.warns(UserWarning, match=left_out):
        assert len(scan_dataset("brats2021", root, "flair", on_missing="skip")) == 3  # 00002 (no seg), 00009 left out
    with pytest.raises(ValueError, match="on_missing must be one of"):
        scan_dataset("brats2021", root, "t2", on_missing="ignore")


def test_a_mask_missing_in_a_release_that_ships_masks(tmp_path):
    root = fake_dataset("mslub", tmp_path / "ms", n=2)
    (root / "patient02" / "patient02_brainmask.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="patient02 \\(.*\\): no brain mask"):
        scan_dataset("mslub", root, "flair")


def test_two_copies_of_a_scan_are_refused(tmp_path):
    root = fake_dataset("brats2021", tmp_path / "b21", n=2)
    shutil.copytree(root / "BraTS2021_00001", root / "copy" / "BraTS2021_00001")
    with pytest.raises(ValueError, match="found more than once.*BraTS2021_00001 \\(t2\\)"):
        scan_dataset("brats2021", root, "t2", on_missing="skip")


def test_empty_unknown_and_wrong_roots(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no file. Expected: BraTS2021_00000/BraTS2021_00000_"):
        scan_dataset("brats2021", tmp_path / "empty", "t2")
    write_files(tmp_path / "other", ["notes/readme.txt", "scan.nii.gz"])
    with pytest.raises(ValueError, match="none of the 2 files .* matches the release's layout. Expected: IXI-T1/"):
        scan_dataset("ixi", tmp_path / "other", "t1")
    fake_dataset("camcan", tmp_path / "camcan", n=1)
    with pytest.raises(ValueError, match="looks like a camcan dataset"):
        scan_dataset("ixi", tmp_path / "camcan", "t1")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        scan_dataset("ixi", tmp_path / "absent", "t1")


def test_brats_picks_the_release_on_disk(tmp_path):
    fake_dataset("brats2023", tmp_path / "gli", n=2)
    assert {e["dataset"] for e in scan_dataset("brats", tmp_path / "gli", "flair")} == {"brats2023"}
    fake_dataset("brats2021", tmp_path / "gli" / "old", n=2)
    with pytest.raises(ValueError, match="holds files of brats2021 and brats2023"):
        scan_dataset("brats", tmp_path / "gli", "flair")


def test_dataset_and_modality_names():
    assert get_layout("BraTS-GLI") is DATASETS["brats2023"] is get_layout("brats2023")
    assert get_layout("wmh").check_modality("FLAIR") == "flair"
    assert get_layout("brats2023").check_modality("t2f") == "flair"
    assert get_layout("camcan").check_modality("T2w") == "t2"
    with pytest.raises(ValueError, match="dataset 'brats2019' is not supported; supported: ixi, camcan"):
        get_layout("brats2019")
    with pytest.raises(ValueError, match="modality 'pd' is not in this release; available: t1, t2"):
        scan_dataset("camcan", ".", "pd")
    with pytest.raises(ValueError, match="modality 't2' is not in this release; available: t1, flair"):
        write_datalist("wmh", ".", modality="t2")


def test_disyre_authors_json_split(tmp_path):
    root = fake_dataset("camcan", tmp_path / "camcan", n=6)
    split = tmp_path / "camcan_upd.json"  # the authors' format: decathlon-like lists per split and modality
    split.write_text(json.dumps({
        "name": "Camcan UPD preprocessing", "labels": {},
        "training_t2": [{"image": f"sub-CC{110033 + i:06d}_T2w_stripped_registered.nii.gz"} for i in range(4)],
        "validation_t2": [{"image": "sub-CC110037_T2w_stripped_registered.nii.gz"}],
        "training_t1": [{"image": "sub-CC999999_T1w_stripped_registered.nii.gz"}],
    }))
    output = write_datalist("camcan", str(root), str(tmp_path / "out.json"), modality="t2", split_file=str(split),
                            verbose=False)
    written = _read(output)
    assert _subjects(written, "training") == {f"sub-CC{110033 + i:06d}" for i in range(4)}
    assert _subjects(written, "validation") == {"sub-CC110037"} and written["test"] == []
    meta = written["metadata"]
    assert meta["split_source"] == "split_file" and meta["unlisted_subjects"] == ["sub-CC110038"]
    assert meta["split_files"][0]["path"] == str(split) and len(meta["split_files"][0]["sha256"]) == 64
    with pytest.raises(ValueError, match="none of its lists .* is named after a split for modality flair"):
        read_split_file(split, "flair")


def test_split_map_for_lists_not_named_after_a_split(tmp_path):
    root = fake_dataset("brats2020", tmp_path / "b20", n=4)
    split = tmp_path / "brats_upd.json"
    entries = [{"image": f"BraTS20_Training_{i:03d}_t2_registered.nii", "label": f"BraTS20_Training_{i:03d}_seg.nii"}
               for i in (1, 2, 3)]
    split.write_text(json.dumps({"training_t2": entries, "training_t2_upd": entries[:2]}))
    datalist = make_datalist("brats2020", root, "t2", split_file=split, split_map={"training_t2_upd": "test"})
    assert _subjects(datalist, "test") == {"BraTS20_Training_001", "BraTS20_Training_002"}
    assert datalist["metadata"]["unlisted_subjects"] == ["BraTS20_Training_003", "BraTS20_Training_355"]
    with pytest.raises(ValueError, match="split_map names list\\(s\\) \\['training_t9'\\] that the file lacks"):
        make_datalist("brats2020", root, "t2", split_file=split, split_map={"training_t9": "test"})
    with pytest.warns(UserWarning, match="training split; DISYRE trains on healthy scans only"):
        make_datalist("brats2020", root, "t2", split_file=split)  # training_t2 -> training, as the file says


def test_behrendt_csv_per_split_and_text_selection(tmp_path):
    root = fake_dataset("brats2021", tmp_path / "b21", n=6)
    header = ",img_name,age,label,img_path,mask_path,seg_path\n"
    (tmp_path / "val.csv").write_text(header + "4,BraTS2021_00001,,1,/Test/Brats21/t1/BraTS2021_00001_t1.nii.gz,,\n")
    (tmp_path / "test.csv").write_text(header + "".join(f"{i},BraTS2021_{i:05d},,1,,,\n" for i in (2, 3, 4)))
    datalist = make_datalist("brats2021", root, "t2",
                             split_file={"validation": tmp_path / "val.csv", "test": str(tmp_path / "test.csv")})
    assert _subjects(datalist, "validation") == {"BraTS2021_00001"}
    assert _subjects(datalist, "test") == {"BraTS2021_00002", "BraTS2021_00003", "BraTS2021_00004"}
    assert datalist["metadata"]["unlisted_subjects"] == ["BraTS2021_00000", "BraTS2021_00005"]

    listing = tmp_path / "subjects.txt"  # a plain list selects subjects; the seeded fractions split them
    listing.write_text("# chosen cases\nBraTS2021_00000\n\n/data/BraTS2021_00003/BraTS2021_00003_t2.nii.gz\n")
    datalist = make_datalist("brats2021", root, "t2", split_file=listing, val_fraction=0.5, test_fraction=0.5)
    assert _subjects(datalist, "validation") | _subjects(datalist, "test") == {"BraTS2021_00000", "BraTS2021_00003"}
    assert len(datalist["validation"]) == len(datalist["test"]) == 1

    table = tmp_path / "splits.tsv"  # a split column assigns the splits itself
    table.write_text("participant\tset\nBraTS2021_00000\tval\nBraTS2021_00001\tTest\n")
    datalist = make_datalist("brats2021", root, "t2", split_file=table, subject_column="Participant")
    assert _subjects(datalist, "validation") == {"BraTS2021_00000"}
    assert _subjects(datalist, "test") == {"BraTS2021_00001"}
    with pytest.raises(ValueError, match="no subject column .* columns: \\['participant', 'set'\\]"):
        read_split_file(table)


def test_split_file_errors_list_every_offender(tmp_path):
    root = fake_dataset("brats2021", tmp_path / "b21", n=3)
    listing = tmp_path / "subjects.txt"
    listing.write_text("BraTS2021_00000\nBraTS2021_00077\nBraTS2021_00078\n")
    with pytest.raises(ValueError, match="2 subject\\(s\\) named in the split file are not on disk.*"
                                         "brats2021_00077, brats2021_00078"):
        make_datalist("brats2021", root, "t2", split_file=listing)
    with pytest.warns(UserWarning, match="not on disk"):
        datalist = make_datalist("brats2021", root, "t2", split_file=listing, on_missing="skip", test_fraction=1.0,
                                 val_fraction=0.0)
    assert _subjects(datalist, "test") == {"BraTS2021_00000"}
    listing.write_text("BraTS2021_00000\nIXI002-Guys-0828-T1.nii.gz\npatient01\n")
    with pytest.raises(ValueError, match="2 entr\\(ies\\) name no brats2021 subject: IXI002-Guys-0828-T1.nii.gz, "
                                         "patient01"):
        make_datalist("brats2021", root, "t2", split_file=listing)
    (tmp_path / "a.txt").write_text("BraTS2021_00000\nBraTS2021_00001\n")
    (tmp_path / "b.txt").write_text("BraTS2021_00001\nBraTS2021_00002\n")
    both = {"validation": tmp_path / "a.txt", "test": tmp_path / "b.txt"}
    with pytest.raises(ValueError, match="named in more than one split: brats2021_00001 \\(test, validation\\)"):
        make_datalist("brats2021", root, "t2", split_file=both)
    with pytest.warns(UserWarning, match="brats2021_00001 \\(test, validation\\); kept in the later split only"):
        datalist = make_datalist("brats2021", root, "t2", split_file=both, on_conflict="prefer_test")
    assert _subjects(datalist, "validation") == {"BraTS2021_00000"}
    assert _subjects(datalist, "test") == {"BraTS2021_00001", "BraTS2021_00002"}
    with pytest.warns(UserWarning, match="left out"):
        datalist = make_datalist("brats2021", root, "t2", split_file=both, on_conflict="drop")
    assert _subjects(datalist, "validation") == {"BraTS2021_00000"}
    assert _subjects(datalist, "test") == {"BraTS2021_00002"}
    with pytest.raises(FileNotFoundError, match="split_file .*nope.csv does not exist"):
        make_datalist("brats2021", root, "t2", split_file=tmp_path / "nope.csv")


def test_cli_command(tmp_path, monkeypatch, capsys):
    from disyre_monai.commands import cli

    root = fake_dataset("brats2021", tmp_path / "BraTS2021", n=4)
    monkeypatch.setattr(sys, "argv", ["disyre-monai", "datalist", "brats", str(root), "--modality", "t2",
                                      "--seed", "1", "--val_fraction", "0.5", "--test_fraction", "0.5"])
    cli.main()
    printed = capsys.readouterr().out
    output = root / "datalist_brats2021_t2.json"
    assert "brats2021 t2: 4 scans" in printed and "validation     2 scans" in printed and str(output) in printed
    assert _read(output)["metadata"]["seed"] == 1
    assert len(load_datalist(None, str(output), "test")) == 2
