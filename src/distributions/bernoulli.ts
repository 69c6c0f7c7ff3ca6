/** Bernoulli likelihood of pixel intensities under decoder logits. */
import * as tf from '@tensorflow/tfjs-core';

/**
 * log p(x | logits) summed over the last axis, one value per row. Targets may be grey values in
 * [0, 1] (the usual "continuous" use of the Bernoulli cross-entropy on MNIST-like data):
 * x·l − softplus(l), which is stable for any logit.
 */
export function bernoulliLogLikelihood(logits: tf.Tensor2D, x: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => tf.sum(tf.sub(tf.mul(x, logits), tf.softplus(logits)), 1) as tf.Tensor1D);
}
