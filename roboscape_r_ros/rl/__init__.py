"""Policies and their training: behaviour cloning, PPO, the physics-sim baseline env, evaluation.

vec.py       the batched env contract PPO trains against (sim, imagination, the tests' toy envs)
policy.py    goal-conditioned image policy (Gaussian actions, optional chunks), checkpoints
bc.py        behaviour-cloning warm start on a dataset's successful episodes
ppo.py       PPO, one algorithm top to bottom (CleanRL style)
goals.py     goal frames for the physics sim: scripted-expert rollouts or demo end frames
sim_env.py   N Meta-World envs as one batched env with Meta-World's dense reward (baseline)
actors.py    per-episode actors for evaluation: a policy, the scripted expert, random actions
evaluate.py  success rates in the physics sim, in-domain and out-of-domain, and the report
calibration.py  imagined success beside real success
distil.py    imagine, filter, distil: a second learner in imagination
resume.py    resume points of BC and PPO
report.py    Wilson intervals, relative improvement, markdown tables
"""
