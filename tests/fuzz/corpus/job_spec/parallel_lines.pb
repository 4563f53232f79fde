
	release-1/srv/models/m
/srv/out/o"
gptqÿÿÿÿÿÿÿÿÿ*
/srv/data/c.txt( (@08@:€€@