"""Where jobs run. `local`: in this process, on the queue's one worker thread (the default)."""
