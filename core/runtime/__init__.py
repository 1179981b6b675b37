"""The runtime over the models: batches of sequences through one forward pass and the logits they leave."""
