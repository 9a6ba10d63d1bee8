"""`tunesmith webui`: a Gradio page to train, evaluate, chat with and export models, in Korean or English.

app         the page (tabs, language switch, page-load defaults) and `launch`
*_tab       one module per tab: Train (train_form: widgets from TrainConfig), Evaluate (+ ab_tab), Chat, Export, Runs
form        form values <-> `key=value` overrides <-> TrainConfig via load_config (the command preview)
jobs        train/eval/export run as `python -m tunesmith ...` subprocesses with a log file
progress    trainer_log.jsonl -> progress bar and loss chart;  runs: what is in the workspace
preview     dataset rows encoded as training does, trained-on part highlighted
chat_model  the chat model (load_for_inference + ChatSession);  blind_ab: human A/B state
i18n        strings_en / strings_ko tables and the language switch
workspace   the one folder every path resolves in;  plan: rows, steps and time before Start
security    login and same-origin guard in front of every route;  server: the app mounted behind it, uvicorn
"""
