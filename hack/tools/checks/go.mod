module flowscope.io/flowscope/hack/tools/checks

go 1.26.0
