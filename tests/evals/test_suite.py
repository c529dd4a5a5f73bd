"""Suite files: parsing, validation with clear messages, sweep expansion, stable seeds."""

from __future__ import annotations

import pytest

from decoding.evals.suite import derive_seed, load_suite, parse_suite
from decoding.evals.tasks import build, check_names

GOOD = """
name = "s"
seed = 7
[defaults]
batch = 4
[[task]]
name = "a"
model = "markov"
decoder = "autoregressive"
samples = 10
metrics = ["distinct_n"]
settings = { max_new_tokens = 3 }
sweep = { temperature = [0.5, 1.0], top_k = [0, 2] }
"""


def test_parse_and_expand():
    suite = parse_suite(GOOD)
    assert suite.name == "s" and suite.seed == 7
    (task,) = suite.tasks
    assert task.batch == 4 and task.kind == "text"
    configs = task.expand()
    assert [c.settings for c in configs] == [
        {"max_new_tokens": 3, "temperature": 0.5, "top_k": 0},
        {"max_new_tokens": 3, "temperature": 0.5, "top_k": 2},
        {"max_new_tokens": 3, "temperature": 1.0, "top_k": 0},
        {"max_new_tokens": 3, "temperature": 1.0, "top_k": 2},
    ]
    assert configs[1].label == "temperature=0.5,top_k=2"


def test_explicit_configs_times_sweep():
    text = GOOD.replace(
        "sweep = { temperature = [0.5, 1.0], top_k = [0, 2] }",
        "sweep = { temperature = [0.5, 1.0] }\nconfigs = [{ top_p = 0.9 }, { typical = 0.9 }]",
    )
    configs = parse_suite(text).tasks[0].expand()
    assert len(configs) == 4
    assert configs[0].label == "top_p=0.9,temperature=0.5"
    assert configs[3].settings == {"max_new_tokens": 3, "typical": 0.9, "temperature": 1.0}


def test_malformed_toml_names_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n\n[[task]]\nname = "a"\nsamples = = 3\n')
    with pytest.raises(ValueError, match=r"bad.toml: malformed TOML: .*line 5"):
        load_suite(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("samples = 10", "samples = 0"), "samples must be >= 1"),
        (("samples = 10", 'samples = "ten"'), "'samples' must be an integer"),
        (
            ('decoder = "autoregressive"', 'decoder = "autoregressive"\nbogus = 1'),
            r"unknown key\(s\) \['bogus'\]",
        ),
        (('name = "a"', 'name = "a b"'), "may hold only letters"),
        (
            ("sweep = { temperature = [0.5, 1.0], top_k = [0, 2] }", "sweep = { temperature = [] }"),
            "sweep.temperature must be a non-empty array",
        ),
        (
            ('metrics = ["distinct_n"]', 'metrics = ["distinct_n"]\nmetric_args = { kl_exact = {} }'),
            "'kl_exact' is not in metrics",
        ),
    ],
)
def test_bad_suites(edit, message):
    with pytest.raises(ValueError, match=message):
        parse_suite(GOOD.replace(*edit))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('model = "markov"', 'model = "markof"'), r"unknown text model 'markof'; available: .*markov"),
        (
            ('decoder = "autoregressive"', 'decoder = "beam"'),
            r"unknown text decoder 'beam'; available: .*aligned.*autoregressive",
        ),
        (
            ('metrics = ["distinct_n"]', 'metrics = ["bleu"]'),
            r"unknown metric 'bleu'; available: .*distinct_n",
        ),
        (
            ('name = "a"', 'name = "a"\nkind = "audio"'),
            r"unknown kind 'audio'; available: classify, image, text",
        ),
    ],
)
def test_unknown_names_list_the_available_ones(edit, message):
    with pytest.raises(ValueError, match=message):
        check_names(parse_suite(GOOD.replace(*edit)))


def test_bad_settings_fail_at_build():
    suite = parse_suite(
        GOOD.replace("settings = { max_new_tokens = 3 }", "settings = { max_new_tokens = 3, temprature = 2 }")
    )
    with pytest.raises(
        ValueError, match=r"task 'a': decoder autoregressive: unknown argument\(s\) \['temprature'\]"
    ):
        build(suite, "cpu")


def test_derived_seeds_are_stable():
    assert derive_seed(0, "a", 3) == derive_seed(0, "a", 3)
    assert derive_seed(0, "a", 3) != derive_seed(0, "a", 4)
    assert derive_seed(1, "task", 0) == 8217288386583528326  # fixed forever: stored results depend on it
