#!/bin/bash
# batch_experiment.sh
# Set up environment
source venv/bin/activate
export GROQ_API_KEY="your-key-here"
# Define experiments
TASKS="gsm8k_basic,gsm8k_multi_step,logical_reasoning"
PROVIDERS="cloud,local"
REPS=30
# Run
python -m core.execution.tests.run_experiment \
--tasks $TASKS \
--repetitions $REPS \
--providers $PROVIDERS \
--save-db \
--verbose 2>&1 | tee batch_$(date +%Y%m%d_%H%M%S).log
