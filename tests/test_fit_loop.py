"""training/fit_loop.plan_batches: the one batch plan of pretraining and finetuning."""

import ml_collections
import pytest

from ctp_tf.errors import UserError
from ctp_tf.training import fit_loop, pretrain


def _train(**kw):
  t = dict(batch_size=4, global_batch_size=0, steps_per_epoch=0, epochs=2,
           steps_per_execution=1)
  t.update(kw)
  return ml_collections.ConfigDict(t)


def test_plan_from_per_replica_or_global_batch():
  assert fit_loop.plan_batches(_train(), 2, 100) == fit_loop.BatchPlan(4, 8, 12)
  assert fit_loop.plan_batches(_train(global_batch_size=6), 3, 100) == \
      fit_loop.BatchPlan(2, 6, 16)
  assert fit_loop.plan_batches(_train(steps_per_epoch=5), 2, 3) == fit_loop.BatchPlan(4, 8, 5)


def test_more_batch_than_videos_refused_or_one_step():
  with pytest.raises(fit_loop.BatchPlanError, match="larger than the 3 training videos"):
    fit_loop.plan_batches(_train(), 2, 3)
  # finetuning's rule: still one step per epoch
  assert fit_loop.plan_batches(_train(), 2, 3, at_least_one_step=True).steps_per_epoch == 1


def test_errors_are_one_line_user_errors_of_the_callers_kind():
  for bad in (_train(global_batch_size=5), _train(batch_size=0), _train(epochs=0),
              _train(steps_per_execution=-1)):
    with pytest.raises(fit_loop.BatchPlanError) as e:
      fit_loop.plan_batches(bad, 2, 100)
    assert isinstance(e.value, UserError) and isinstance(e.value, ValueError)
    assert "\n" not in str(e.value)
  with pytest.raises(pretrain.PretrainError):
    fit_loop.plan_batches(_train(global_batch_size=5), 2, 100, error=pretrain.PretrainError)
