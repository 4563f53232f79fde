/srv/models/m
/srv/out/o"
gptq€ (0Aš™™™™™©?H@*
/srv/data/c.txt (@@