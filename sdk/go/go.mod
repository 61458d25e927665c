module github.com/rulewatch/rulewatch/sdk/go

go 1.24
