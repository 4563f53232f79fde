"
gptq