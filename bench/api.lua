-- wrk script: POST the API call ["add", [1, 2], {}] as the form field json.
wrk.method = "POST"
wrk.body = "json=%5B%22add%22%2C%5B1%2C2%5D%2C%7B%7D%5D"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
