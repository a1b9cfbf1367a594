"""Whole-model planning (DAQKF's SPAQ / DFKE loop, measured): profile every linear layer under every
hardware configuration (profile), choose one configuration per layer under a budget with an ILP
(policy), pack the model into a program for the accelerator top (compiler), and run the whole model
with its planned linears through the integer pipeline (runner)."""
