"""The station agent: capture frames on a line PC, ask the inspection service, tell the line.

Example::

    from agent.config import AgentConfig
    from agent.runner import Agent

    config = AgentConfig.load("station.yaml", overrides={"source": {"uri": "0"}})
    with Agent(config) as agent:
        agent.run()          # until stopped (SIGTERM / Ctrl-C) or the source is exhausted

Installs with `pip install "qc[agent]"`: httpx, paho-mqtt, asyncua, zxing-cpp on top of the
core. Never imports FastAPI, torch or Ultralytics (tests/test_agent_packaging.py proves it).
See docs/station.md for the set-up guide.
"""

AGENT_VERSION = "0.1.0"
