import pytest
import yaml

from scoremix.config import Config, config_from_dict
from scoremix.config_loader import load_config
from scoremix.errors import ConfigError
from scoremix.presets import PRESETS


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_validates_and_round_trips_through_yaml(name):
    cfg = load_config(name)
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_overrides_shorthand_and_dotted():
    cfg = load_config("ring8", ["steps=123", "seed=7", "score.hidden=64", "gan=true", "score.channel_mult=[1,2,4]"])
    assert cfg.train.steps == 123 and cfg.train.seed == 7
    assert cfg.score.hidden == 64 and cfg.generator.hidden != 64
    assert cfg.method.gan is True
    assert cfg.score.channel_mult == [1, 2, 4] and cfg.generator.channel_mult == [1, 2]


def test_default_is_quickstart():
    assert load_config(None).name == "quickstart"


@pytest.mark.parametrize(
    "override, message",
    [
        ("stepz=5", "did you mean 'steps'"),
        ("hidden=5", "ambiguous"),
        ("steps=abc", "expected an integer"),
        ("steps=0", "train.steps must be >= 1"),
        ("ema=1.5", "train.ema"),
        ("score_alpha=sometimes", "unknown alpha sampler"),
        ("gen_alpha=paper", "alpha=0"),
        ("weighting=foo", "method.weighting"),
        ("precision=fp16", "fp32 or bf16"),
        ("data.source=folder", "needs data.path"),
        ("conditional=true", "has no labels"),
        ("score.arch=unet", "needs images"),
        ("gan=maybe", "expected true or false"),
        ("noise.sigma_min=100", "sigma_min < sigma_max"),
        ("steps", "is not key=value"),
    ],
)
def test_bad_values_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("ring8", [override])


def test_yaml_file_with_base_preset(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("preset: ring8\nname: exp\ntrain:\n  steps: 42\nscore:\n  hidden: 96\n")
    cfg = load_config(str(path), ["seed=3"])
    assert (cfg.name, cfg.train.steps, cfg.score.hidden, cfg.train.seed) == ("exp", 42, 96, 3)
    assert cfg.data.source == "ring8"


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepps: 3\n")
    with pytest.raises(ConfigError, match="did you mean 'train.steps'"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="unknown preset 'ring9'; did you mean 'ring8'"):
        load_config("ring9")


def test_saved_config_reproduces_itself():
    cfg = load_config("digits", ["steps=10"])
    assert config_from_dict(cfg.to_dict()) == cfg
    assert isinstance(Config().to_yaml(), str)
