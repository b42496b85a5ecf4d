"""What the entry points share at the command line: one ``error:`` line and exit status 2 for a user's mistake.

Hydra reports a composition mistake (an unknown option of a group, an unknown key, a group of another entry point,
a missing ``+``) in several lines with exit status 1, after it has made the run's output folder. :func:`entry`
composes the command line's overrides first (each value of a ``-m`` sweep once) and turns the first failure into one
line that names the bad key or value, the valid choices and the closest one; no output folder is made.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import re
import runpy
import sys
from collections.abc import Callable, Iterable, Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, InstantiationException, MissingConfigException
from omegaconf import DictConfig, OmegaConf

from pnp.config import CONFIGS, available, composed
from pnp.errors import ConfigError

EXIT_USER_ERROR, EXIT_DIVERGED = 2, 3
# flags after which Hydra does something else than run the job (help, info, printing the config, another config)
OTHER_MODES = re.compile(
    r"^-(h|-help|-hydra-help|i|-info|c|-cfg|p|-package|-resolve|sc|-shell-completion|cp|"
    r"-config-path|cn|-config-name|cd|-config-dir|-version|-experimental-rerun)(=.*)?$"
)


log = logging.getLogger("pnp")


class ConsoleFormatter(logging.Formatter):
    """The console's format (``pnp/configs/hydra/job_logging/pnp.yaml``): a message as it is, a warning or an error
    as ``warning: …`` / ``error: …``."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


class BelowWarning(logging.Filter):
    """stdout's filter: warnings and errors go to stderr only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def report_error(message: str) -> None:
    """``error: message`` on stderr, and into the run's log inside a Hydra job (whose logging prints it)."""
    if HydraConfig.initialized():
        log.error(message)
    else:
        print(f"error: {message}", file=sys.stderr)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn configuration mistakes into one ``error:`` line on stderr (and the run's log) and exit status 2."""
    try:
        yield
    except (ConfigError, InstantiationException) as err:
        cause = err.__cause__ if isinstance(err.__cause__, ConfigError) else err
        report_error(str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__)
        sys.exit(EXIT_USER_ERROR)


def closest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean `x`?)`` for the closest choice, or nothing."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{match[0]}`?)" if match else ""


def groups_of(cfg: DictConfig) -> list[str]:
    """The config groups an entry point composes (its defaults list, Hydra's own left out)."""
    return sorted(g for g in cfg.hydra.runtime.choices if not g.startswith("hydra"))


#: the groups each entry point's command line adds with ``+`` (its config has no default for them: ``+problem=``)
ADDED_GROUPS: dict[str, tuple[str, ...]] = {"solve": ("problem",), "tune": ("problem",)}


class Composer:
    """Composes ``config_name`` with overrides; ``added`` are the groups that enter with ``+`` (:data:`ADDED_GROUPS`);
    ``searchpath`` are the command line's ``hydra.searchpath=[…]`` overrides (a user's own config folders)."""

    def __init__(self, config_name: str, searchpath: tuple[str, ...] = ()) -> None:
        self.config_name, self.searchpath = config_name, searchpath
        self.added = ADDED_GROUPS.get(config_name, ())

    def __call__(self, overrides: list[str]) -> DictConfig:
        return composed(*self.searchpath, *overrides, config=self.config_name, hydra=True)

    @functools.cached_property
    def base(self) -> DictConfig:
        """The config without overrides, composed once."""
        return self([])

    def groups(self) -> list[str]:
        return sorted({*groups_of(self.base), *self.added})

    def explain(self, err: HydraException, override: str, others: list[str]) -> str:
        """One line for a composition failure caused by ``override`` (composed after ``others``)."""
        key, _, value = override.lstrip("+~").partition("=")
        if isinstance(err, MissingConfigException):
            found = re.search(r"Could not find '([^']+)/([^']+)'", str(err))
            group, value = found.groups() if found else (key, value)
            options = available(group)
            listed = ", ".join(options)
            return f"{override}: {group} has no option `{value}`{closest(value, options)}; options: {listed}"
        groups = self.groups()
        entry_point = f"pnp.{self.config_name}"
        if "No match in the defaults list" in str(err):
            if key in self.added:
                return f"{override}: {key} has no default, add it with a `+`: +{key}={value}"
            return (
                f"{override}: {entry_point} has no config group `{key}`{closest(key, groups)}; "
                f"its groups: {', '.join(groups)}"
            )
        if isinstance(err.__cause__, Exception) and "Could not override" in str(err):
            parent, _, leaf = key.rpartition(".")
            try:
                base = self(others)
            except HydraException:
                base = self.base
            node = OmegaConf.select(base, parent) if parent else base
            if isinstance(node, DictConfig):
                names = [str(k) for k in node if str(k) != "hydra"]
                full = [f"{parent}.{n}" if parent else n for n in names]
                where = f"{parent} has" if parent else f"{entry_point} has"
                extra = groups if not parent else []
                hint = closest(key, [*full, *extra])
                return f"{override}: unknown key `{key}`{hint}; {where}: {', '.join(names)} (a new key needs +{key}=…)"
            return f"{override}: `{parent}` is not a section, so it has no key `{leaf}`"
        return f"{override}: {str(err).strip().splitlines()[0]}"


def variants(parsed: list[Override]) -> Iterator[list[str]]:
    """The override lists to compose: each sweep value once, the other overrides at their first value."""
    values = []
    for o in parsed:
        prefix = o.get_key_element()
        if o.is_sweep_override():
            try:
                values.append([f"{prefix}={v}" for v in o.sweep_string_iterator()])
            except Exception:  # an interval or a glob: left to the sweeper
                values.append([])
        else:
            values.append([o.input_line])
    first = [v[0] for v in values if v]
    yield first
    for i, vs in enumerate(values):
        for v in vs[1:]:
            head = [w[0] for w in values[:i] if w]
            tail = [w[0] for w in values[i + 1 :] if w]
            yield [*head, v, *tail]


def check_composition(argv: list[str], config_name: str) -> str | None:
    """The first composition mistake of the command line as one line, or None (also when a flag asks Hydra for
    something other than a run, e.g. ``--help``, which Hydra then handles itself)."""
    if any(OTHER_MODES.match(a) for a in argv):
        return None
    overrides = [a for a in argv if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    searchpath = tuple(a for a in argv if a.lstrip("+~").startswith("hydra.searchpath="))
    for arg in overrides:
        match = re.fullmatch(r"\+?([A-Za-z_]\w*)=(null|None)", arg)
        if match and (CONFIGS / match.group(1)).is_dir():
            return f"{arg}: to run without the {match.group(1)} group write ~{match.group(1)}"
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        special = any(re.search(r"=.*[~<>()]", o) for o in overrides)
        hint = "; quote a value with characters such as ~ < > ( ) as 'key=\"value\"'" if special else ""
        return f"cannot parse the overrides: {str(err).strip().splitlines()[0]}{hint}"
    composer = Composer(config_name, searchpath)
    groups = composer.groups()
    for o in parsed:  # `+group=option` of another entry point composes (our groups are global packages): refuse it
        if o.is_add() and (CONFIGS / o.key_or_group).is_dir() and o.key_or_group not in groups:
            listed = ", ".join(groups)
            return f"{o.input_line}: pnp.{config_name} has no config group `{o.key_or_group}`; its groups: {listed}"
    for variant in variants(parsed):
        try:
            composer(variant)
        except HydraException as err:
            return composer.explain(*culprit(composer, variant, err))
    return None


def refuse_composition_mistakes(argv: list[str], config_name: str) -> None:
    """Raise a :class:`ConfigError` with the command line's first composition mistake (:func:`check_composition`),
    the check :func:`entry` runs before Hydra's."""
    problem = check_composition(argv, config_name)
    if problem:
        raise ConfigError(problem)


def culprit(composer: Composer, overrides: list[str], err: HydraException) -> tuple[HydraException, str, list[str]]:
    """The first override whose addition makes the composition fail, its error and the overrides before it; ``err``
    is the error of composing all of them (the last one is the culprit when every shorter prefix composes)."""
    if not overrides:
        raise err  # the entry point's own config does not compose: a bug, not a user mistake
    for i in range(len(overrides) - 1):
        try:
            composer(overrides[: i + 1])
        except HydraException as first:
            return first, overrides[i], overrides[:i]
    return err, overrides[-1], overrides[:-1]


def help_text(composer: Composer, summary: str) -> str:
    """``--help``: this entry point's groups (options, default) and main keys, one line each."""
    cfg = composer.base
    choices = cfg.hydra.runtime.choices
    lines = [summary, "", "groups (group=option; -m and comma-separated options sweep):"]
    for group in composer.groups():
        required = group in composer.added
        default = f" (required: +{group}=…)" if required else f" (default {choices[group] or 'none'})"
        lines.append(f"  {group:<12} {', '.join(available(group))}{default}")
    lines.append("keys (key=value):")
    for key, value in OmegaConf.to_container(cfg, resolve=False).items():
        if key != "hydra":
            section = isinstance(value, dict)
            shown = ", ".join(map(str, value)) if section else str(value)
            lines.append(f"  {key + ('.' if section else ''):<12} {shown}"[:118])
    lines.append("Hydra's own flags: --hydra-help; the whole config: --cfg job")
    return "\n".join(lines)


#: (overrides, message) of the diverged runs of this process's sweep, read from the sweep folder by
#: :class:`pnp.sweep.DivergedRuns` after the sweep, whatever the launcher
SWEEP_FAILURES: list[tuple[str, str]] = []


def sweep_report() -> str:
    rows = [f"  {o}: {m.split(';')[0]}" for o, m in SWEEP_FAILURES]
    return "\n".join([f"{len(rows)} run(s) of the sweep diverged:", *rows])


def entry(main: Callable[[], None], config_name: str) -> None:
    """Run a Hydra ``main`` after composing its command line here, so that a mistake is one line (exit 2);
    ``--help`` prints :func:`help_text` (the first line of the entry point's docstring, its groups and keys)."""
    if {"-h", "--help"} & set(sys.argv[1:]):
        doc = (sys.modules[main.__module__].__doc__ or "").strip().splitlines()
        print(help_text(Composer(config_name), doc[0] if doc else f"pnp.{config_name}"))
        return
    with user_errors():
        refuse_composition_mistakes(sys.argv[1:], config_name)
    main()
    if SWEEP_FAILURES:  # after the sweep: on stderr only (each run's own log has its warning)
        print(f"error: {sweep_report()}", file=sys.stderr)
        sys.exit(EXIT_DIVERGED)


def run_as_main(module: str) -> None:
    """Run ``pnp.<module>`` exactly as ``python -m pnp.<module>`` does (its ``__main__`` block, with the module's file
    as ``sys.argv[0]``): the console scripts ``pnp-<module>`` are this, so they behave as the module does."""
    runpy.run_module(f"pnp.{module}", run_name="__main__", alter_sys=True)


def solve() -> None:
    """``pnp-solve``: ``python -m pnp.solve``."""
    run_as_main("solve")


def train() -> None:
    """``pnp-train``: ``python -m pnp.train``."""
    run_as_main("train")


def tune() -> None:
    """``pnp-tune``: ``python -m pnp.tune``."""
    run_as_main("tune")


def certify() -> None:
    """``pnp-certify``: ``python -m pnp.certify``."""
    run_as_main("certify")
