"""The DreamerV3 agent core (SPEC §3, §4): networks, distributions, maths, RSSM, world model,
actor-critic, the Agent facade (`dreamerctl.agent.agent.Agent`) and the update loops
(`dreamerctl.agent.loops.run_updates`). It knows nothing about files, CLIs or environments."""
