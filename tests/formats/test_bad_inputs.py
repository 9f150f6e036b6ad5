"""The corpus of malformed web models (tests/data/bad_models, made by make_bad_models.py): every
command refuses each one with one line naming the file and the problem, exit code 2 (verify: 1),
no traceback, and writes nothing."""
from pathlib import Path

import pytest

from qshard.cli import main

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad_models"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def test_corpus_is_complete():
    assert len(CASES) >= 27


@pytest.mark.parametrize("name", CASES)
def test_every_command_refuses_it_clearly(name, tmp_path, capsys):
    folder = CORPUS / name
    expected = (folder / "expected.txt").read_text()
    for argv in (["inspect", str(folder), "--no-gzip"], ["quantize", str(folder), str(tmp_path / "out"), "--uint8"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert expected in err, (argv, err)
        lines = err.strip().splitlines()
        assert lines[-1].startswith("qshard: error: ") and "Traceback" not in err
        assert str(folder) in lines[-1] or "shard file is missing" in lines[-1]
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    assert main(["verify", str(folder)]) == 1
    assert expected in capsys.readouterr().out


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(Exception):
        main(["--debug", "inspect", str(CORPUS / "invalid_json")])
