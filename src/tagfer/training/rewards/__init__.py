"""Reward callbacks for GRPO: one module per reward, built by name from ``rl.rewards``.

=====================  ==========================================================  ===========
name                   what it scores                                              range
=====================  ==========================================================  ===========
format                 the TAG trace grammar is fully valid                        [0, 1]
answer                 the single answer is exactly the label                      {0, 1}
au_grounding           IoU-weighted F1 of cited AU boxes vs the detector's         [0, 1]
label_au_consistency   F1 of cited AUs against the answer's EMFACS prior           [0, 1]
length_penalty         DAPO soft overlong punishment                               [−1, 0]
au_f1                  Facial-R1: 2·F1(cited AUs, active AUs) − 1                  [−1, 1]/None
=====================  ==========================================================  ===========

Each reward is called with the step's :class:`~tagfer.training.rewards.batch.GRPOBatch`, whose
completions are parsed once for all of them.
"""

from tagfer.training.rewards.base import NonFiniteRewardError, RewardCallback, reward_matrix, reward_stats
from tagfer.training.rewards.batch import GRPOBatch
from tagfer.training.rewards.registry import REWARDS, build_reward, build_rewards, reward_params

__all__ = [
    "REWARDS",
    "GRPOBatch",
    "NonFiniteRewardError",
    "RewardCallback",
    "build_reward",
    "build_rewards",
    "reward_matrix",
    "reward_params",
    "reward_stats",
]
