"""Render a conversation with tools through Qwen2.5-Instruct's chat template as
transformers does (its own `render_jinja_template`: Jinja2 with `tojson` as Python's
`json.dumps`, keys in the order given), for `qwen_tools`' reference test.

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install transformers jinja2
    /tmp/tf/bin/python tools/qwen_template_reference/render.py \
        tests/fixtures/qwen_tools/weather.json > tests/fixtures/qwen_tools/weather.prompt.txt

The input is what the tool loop holds: the system prompt, the user's turns, the
rounds (assistant calls with their arguments as JSON text, as the OpenAI API has
them, then tool results) and the tools as OpenAI `function` definitions. The
template is `Qwen-Qwen2.5-7B-Instruct.jinja` beside this file (from llama.cpp's
models/templates, the same text as Qwen2.5-Instruct's tokenizer_config.json).
"""

import json
import pathlib
import sys

from transformers.utils.chat_template_utils import render_jinja_template

here = pathlib.Path(__file__).parent
template = (here / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
case = json.loads(pathlib.Path(sys.argv[1]).read_text())

messages = [{"role": "system", "content": case["system"]}] + case["messages"]
for m in case["rounds"]:
    m = dict(m)
    if "tool_calls" in m:
        # transformers takes a call's arguments as an object.
        m["tool_calls"] = [
            {**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
            for c in m["tool_calls"]
        ]
    messages.append(m)

out = render_jinja_template(
    conversations=[messages],
    tools=case["tools"],
    chat_template=template,
    add_generation_prompt=True,
)
rendered = out[0][0] if isinstance(out, tuple) else out[0]
sys.stdout.write(rendered)
