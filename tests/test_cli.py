"""Every command follows `fnevr_jax.cli`: --help, one-line errors, exit status 2 for a bad
command line (unknown flag, config typo) and 1 for bad input."""
import importlib

import pytest

COMMANDS = ["train", "eval", "animate", "fnevr_jax.convert", "fnevr_jax.api",
            "fnevr_jax.nerf_head.fit", "fnevr_jax.nerf_head.render", "data_pipelines.synthetic",
            "data_pipelines.preprocess", "fnevr_jax.demo"]
WITH_CONFIG = ["train", "eval", "fnevr_jax.nerf_head.fit"]


def _exit(main, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code


@pytest.mark.parametrize("name", COMMANDS)
def test_help_and_bad_flags(name, capsys):
    main = importlib.import_module(name).main
    assert _exit(main, ["--help"]) == 0
    assert "--" in capsys.readouterr().out
    assert _exit(main, ["--no-such-flag"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err


@pytest.mark.parametrize("name", WITH_CONFIG)
def test_config_typos_are_flag_errors(name, capsys, tmp_path):
    main = importlib.import_module(name).main
    argv = (["--checkpoint", "x", "--data", "x", "--out", "x"] if name == "eval"
            else ["--workdir", str(tmp_path)])
    assert _exit(main, argv + ["--config.train.batchsize=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batchsize" in err[0], err


def test_bad_input_is_exit_status_1(capsys, tmp_path):
    import train
    code = train.main(["--config=configs/fnevr.py:quick", f"--workdir={tmp_path}",
                       f"--config.data.dir={tmp_path / 'none'}"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()      # after the run's log lines
    errors = [line for line in err if line.startswith("error:")]
    assert errors == err[-1:] and "no dataset at" in errors[0], err
