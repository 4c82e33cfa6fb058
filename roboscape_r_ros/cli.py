"""`roboscape-r`: the command line of roboscape_r_ros.

    roboscape-r <command> [--preset NAME|FILE.yaml] [key.sub=value ...]

Each command owns a typed config dataclass. Its values come from the dataclass defaults, then the
preset, then the dotted overrides; `roboscape-r <command> --help` lists every option with its type,
default and meaning. Predictable bad input (an unknown task, a bad value, an unwritable folder, a
corrupt file) ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from roboscape_r_ros.config import available_presets, describe, help_default, load_config, to_yaml
from roboscape_r_ros.errors import RoboscapeError


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    config: str  # "module:ConfigClass", imported only when the command is used
    run: str  # "module:function(cfg)"
    default_preset: str | None = None
    presets: str = ""  # folder under presets/ (default: the command's name)
    distributed: bool = False  # runs under torchrun as one rank of a DDP group (roboscape_r_ros.distributed)

    @property
    def preset_folder(self) -> str:
        return self.presets or self.name

    def load(self, attr: str) -> Any:
        module, _, name = getattr(self, attr).partition(":")
        return getattr(importlib.import_module(module), name)


COMMANDS = [
    Command(
        name="collect",
        summary="record scripted-expert, noisy, failed and random Meta-World episodes to a dataset",
        config="roboscape_r_ros.data.collect:CollectConfig",
        run="roboscape_r_ros.commands.collect:run_collect",
    ),
    Command(
        name="inspect",
        summary="validate a dataset (layout, files, frames) and print its summary",
        config="roboscape_r_ros.commands.inspect:InspectConfig",
        run="roboscape_r_ros.commands.inspect:run_inspect",
    ),
    Command(
        name="import-bag",
        summary="rosbag2 recordings (MCAP or sqlite3): camera, actions, states, labels -> a dataset",
        config="roboscape_r_ros.commands.import_bag:ImportBagConfig",
        run="roboscape_r_ros.commands.import_bag:run_import_bag",
        presets="import_bag",
    ),
    Command(
        name="train-wm",
        summary="train the world model (tokenizer, action model with done head, goal model) into a run folder",
        config="roboscape_r_ros.commands.train_wm:TrainWMConfig",
        run="roboscape_r_ros.commands.train_wm:run_train_wm",
        presets="train_wm",
        distributed=True,
    ),
    Command(
        name="evaluate-wm",
        summary="evaluate a world model on its run's held-out episodes: open-loop rollouts, done head, goal model",
        config="roboscape_r_ros.commands.evaluate_wm:EvaluateWMConfig",
        run="roboscape_r_ros.commands.evaluate_wm:run_evaluate_wm",
        presets="evaluate_wm",
    ),
    Command(
        name="train-bc",
        summary="behaviour-cloning warm start of the goal-conditioned image policy on a dataset's successes",
        config="roboscape_r_ros.commands.train_policy:PolicyTrainConfig",
        run="roboscape_r_ros.commands.train_policy:run_bc",
        presets="policy",
        distributed=True,
    ),
    Command(
        name="train-sim-ppo",
        summary="baseline: BC warm start, then PPO in the physics sim with Meta-World's hand-written reward",
        config="roboscape_r_ros.commands.train_policy:PolicyTrainConfig",
        run="roboscape_r_ros.commands.train_policy:run_sim_baseline",
        presets="policy",
    ),
    Command(
        name="train-imagination",
        summary="BC warm start, then PPO inside the world model with its endogenous reward (RL in imagination)",
        config="roboscape_r_ros.commands.train_policy:PolicyTrainConfig",
        run="roboscape_r_ros.commands.train_policy:run_imagination_ppo",
        presets="policy",
        distributed=True,
    ),
    Command(
        name="reward-sanity",
        summary="does the endogenous reward rise toward success on held-out demos, and does done fire at success",
        config="roboscape_r_ros.commands.reward_sanity:RewardSanityConfig",
        run="roboscape_r_ros.commands.reward_sanity:run_reward_sanity",
    ),
    Command(
        name="evaluate",
        summary="success rates of policies in the physics sim, in-domain and out-of-domain, as a report",
        config="roboscape_r_ros.rl.evaluate:EvaluateConfig",
        run="roboscape_r_ros.commands.evaluate:run_evaluate",
    ),
    Command(
        name="rollouts",
        summary="a trained policy's own episodes in the physics sim, labelled, after a base dataset's in a new one",
        config="roboscape_r_ros.commands.rollouts:RolloutsConfig",
        run="roboscape_r_ros.commands.rollouts:run_rollouts",
    ),
    Command(
        name="calibrate-ood",
        summary="shadow-mode prediction error on in-domain and changed scenes: AUROC and the guard's threshold",
        config="roboscape_r_ros.commands.calibrate_ood:CalibrateOodConfig",
        run="roboscape_r_ros.commands.calibrate_ood:run_calibrate_ood",
    ),
    Command(
        name="export",
        summary="a trained policy as an ONNX file (metadata inside, checked against torch) for ONNX Runtime",
        config="roboscape_r_ros.commands.export:ExportConfig",
        run="roboscape_r_ros.commands.export:run_export",
    ),
    Command(
        name="deploy-config",
        summary="parameter files that deploy a policy with its dataset's action spec and frame size",
        config="roboscape_r_ros.commands.deploy_config:DeployConfigConfig",
        run="roboscape_r_ros.commands.deploy_config:run_deploy_config",
    ),
    Command(
        name="view",
        summary="a dataset, a world-model run (real | dream | goal, held-action rollouts) or an evaluation "
        "as an MCAP recording for Foxglove or ros2 bag play",
        config="roboscape_r_ros.commands.view:ViewConfig",
        run="roboscape_r_ros.commands.view:run_view",
    ),
    Command(
        name="demo",
        summary="the whole method end to end: collect, train-wm, reward sanity, BC, imagination PPO, sim-PPO "
        "baseline, evaluate, report",
        config="roboscape_r_ros.commands.demo:DemoConfig",
        run="roboscape_r_ros.commands.demo:run_demo",
        default_preset="demo",
    ),
    Command(
        name="lab-loop",
        summary="rounds of the policy's own sim episodes -> world-model fine-tune -> PPO in imagination -> "
        "evaluation, on a finished demo run",
        config="roboscape_r_ros.commands.lab_loop:LabLoopConfig",
        run="roboscape_r_ros.commands.lab_loop:run_lab_loop",
    ),
    Command(
        name="launch",
        summary="run the ROS 2 node graph (imagination, sim or real) as processes, like ros2 launch",
        config="roboscape_r_ros.commands.launch:LaunchConfig",
        run="roboscape_r_ros.commands.launch:run_launch",
    ),
]


def _options_help(command: Command) -> str:
    rows = describe(command.load("config"))
    lines = ["options (set as key=value; lists as a,b,c or [a, b]):"]
    for name, type_name, default, help_text in rows:
        first, *more = help_default(default)
        if more:
            lines.append(f"  {name} ({type_name}, default:)")
            lines.extend(f"      {line}" for line in (first, *more))
        else:
            lines.append(f"  {name} ({type_name}, default: {first})")
        lines.extend(textwrap.wrap(help_text, width=88, initial_indent="      ", subsequent_indent="      "))
    presets = ", ".join(available_presets(command.preset_folder)) or "none"
    lines.append(f"\npresets: {presets}")
    return "\n".join(lines)


class _HelpWithOptions(argparse.Action):
    """-h/--help of a command: lists every option of its config (imported only now)."""

    def __init__(self, option_strings: list[str], dest: str, command: Command) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show every option of this command and exit")
        self.command = command

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        parser.epilog = _options_help(self.command)
        parser.print_help()
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roboscape-r",
        description="Train manipulation policies in a learned world model (RoboScape-R) and run them with ROS 2.",
        epilog="Run 'roboscape-r <command> --help' for every option of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for command in COMMANDS:
        p = sub.add_parser(
            command.name,
            help=command.summary,
            description=command.summary,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            add_help=False,
        )
        p.add_argument("-h", "--help", action=_HelpWithOptions, command=command)
        p.set_defaults(command_spec=command)
        p.add_argument("--preset", default=command.default_preset, help="preset name or path to a YAML file")
        p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. env.resolution=96")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    command: Command = args.command_spec
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun rank 0 alone prints: all ranks meet one error
    try:
        cfg = load_config(command.load("config"), command.preset_folder, args.preset, args.overrides)
        if args.print_config:
            print(to_yaml(cfg), end="")
            return 0
        run: Callable[[Any], Any] = command.load("run")
        from roboscape_r_ros.distributed import process_group  # imports torch, which `--help` and configs need not

        with process_group(command.name, command.distributed):
            result = run(cfg)
    except RoboscapeError as err:
        if main_rank:
            print(f"roboscape-r {command.name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"roboscape-r {command.name}: interrupted", file=sys.stderr)
        return 130
    if result is not None and main_rank:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
