"""Loracle's Discord front end (discord.py 2.x).

`client.create_bot(engine, settings)` builds the bot; `runner.run_bot(settings)` runs it.
The bot talks to the engine only through `port.EnginePort`, so tests can drive it with a
fake engine and the real one alike.
"""
