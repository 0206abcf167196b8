module flowscope.io/flowscope/hack/tools/layercheck

go 1.26.0
